// ops/core/cuda/cublaslt.cuh — the slice of cuBLASLt (CUDA 13: libcublasLt.so.13) that matmul.cu
// uses, loaded with dlopen on the first CUDA matmul instead of linked.
//
// Why not linked: the library is optional and 500+ MB. Linked, libvt_core would fail to load (on
// cpu too) wherever it is missing, and the build would need its headers, which pip's isolated build
// environment does not have. Loaded on first use, the core pack builds wherever nvcc is and imports
// anywhere, shares the copy torch already loaded (same soname), and a missing library is one clear
// error on the first CUDA matmul.
// Where it is looked for: its soname (already loaded, LD_LIBRARY_PATH, the loader's cache, and
// libvt_core's RUNPATH: site-packages/nvidia/cu13/lib of the pip package nvidia-cublas, and the
// folders CMake found it in), then /usr/local/cuda/lib64.
// The declarations are cublasLt.h's (values, struct layouts, signatures), under short names; where
// the CUDA toolkit has the header (VT_CUBLASLT_HEADER), static_asserts check them against it.
#pragma once

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <library_types.h>  // cudaDataType_t

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <type_traits>

namespace lt {

using Status = int;  // cublasStatus_t
constexpr Status kSuccess = 0, kNotSupported = 15;
using Handle = struct Context*;

struct MatmulDesc { uint64_t data[32]; };   // cublasLtMatmulDescOpaque_t (made in place, never freed)
struct MatrixLayout { uint64_t data[8]; };  // cublasLtMatrixLayoutOpaque_t
struct Preference { uint64_t data[8]; };    // cublasLtMatmulPreferenceOpaque_t
struct Algo { uint64_t data[8]; };          // cublasLtMatmulAlgo_t
struct HeuristicResult {                    // cublasLtMatmulHeuristicResult_t
  Algo algo;
  size_t workspace_size;
  Status state;
  float waves_count;
  int reserved[4];
};

constexpr int kCompute32F = 68, kCompute32FFastTF32 = 77, kCompute64F = 70;  // cublasComputeType_t
constexpr int kOpN = 0, kOpT = 1;                                           // cublasOperation_t
constexpr int kDescTransA = 3, kDescTransB = 4, kDescEpilogue = 7, kDescBiasPointer = 8;
constexpr int kLayoutBatchCount = 5, kLayoutStridedBatchOffset = 6;
constexpr int kPrefMaxWorkspaceBytes = 1, kPrefMinAlignA = 5, kPrefMinAlignB = 6, kPrefMinAlignC = 7, kPrefMinAlignD = 8;
constexpr int kEpilogueBias = 4;  // cublasLtEpilogue_t

// The library's functions (the *_internal ones are what cublasLt.h's inline *Init wrappers call).
struct Api {
  Status (*create)(Handle*);                                                            // cublasLtCreate
  const char* (*status_string)(Status);                                                 // cublasLtGetStatusString
  Status (*desc_init)(MatmulDesc*, size_t, int compute, cudaDataType_t scale);          // cublasLtMatmulDescInit_internal
  Status (*desc_set)(MatmulDesc*, int attr, const void* buf, size_t size);              // cublasLtMatmulDescSetAttribute
  Status (*layout_init)(MatrixLayout*, size_t, cudaDataType_t, uint64_t rows, uint64_t cols, int64_t ld);
  Status (*layout_set)(MatrixLayout*, int attr, const void* buf, size_t size);          // cublasLtMatrixLayoutSetAttribute
  Status (*pref_init)(Preference*, size_t);                                             // cublasLtMatmulPreferenceInit_internal
  Status (*pref_set)(Preference*, int attr, const void* buf, size_t size);              // cublasLtMatmulPreferenceSetAttribute
  Status (*heuristic)(Handle, MatmulDesc*, MatrixLayout* a, MatrixLayout* b, MatrixLayout* c, MatrixLayout* d,
                      Preference*, int requested, HeuristicResult*, int* returned);     // cublasLtMatmulAlgoGetHeuristic
  Status (*matmul)(Handle, MatmulDesc*, const void* alpha, const void* a, MatrixLayout*, const void* b,
                   MatrixLayout*, const void* beta, const void* c, MatrixLayout*, void* d, MatrixLayout*,
                   const Algo*, void* workspace, size_t workspace_size, cudaStream_t);  // cublasLtMatmul
};

// The loaded library (once per process), or nullptr with *why saying what was tried.
inline const Api* api(const char** why) {
  static Api a;
  static std::string error;
  static std::once_flag once;
  std::call_once(once, [] {
    void* lib = nullptr;
    std::string tried;
    for (const char* name : {"libcublasLt.so.13", "/usr/local/cuda/lib64/libcublasLt.so.13"}) {
      if ((lib = dlopen(name, RTLD_NOW | RTLD_LOCAL))) break;
      const char* e = dlerror();
      tried += std::string(tried.empty() ? "" : "; ") + (e ? e : name);
    }
    if (!lib) {
      error = "cuBLASLt could not be loaded (" + tried + "): install the pip package nvidia-cublas "
              "(vibetensor's `cuda` extra) or put a CUDA 13 toolkit's lib64 on LD_LIBRARY_PATH";
      return;
    }
    bool ok = true;
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<typename std::remove_reference<decltype(fn)>::type>(dlsym(lib, name));
      if (!fn && ok) error = std::string("cuBLASLt has no symbol ") + name, ok = false;
    };
    sym(a.create, "cublasLtCreate");
    sym(a.status_string, "cublasLtGetStatusString");
    sym(a.desc_init, "cublasLtMatmulDescInit_internal");
    sym(a.desc_set, "cublasLtMatmulDescSetAttribute");
    sym(a.layout_init, "cublasLtMatrixLayoutInit_internal");
    sym(a.layout_set, "cublasLtMatrixLayoutSetAttribute");
    sym(a.pref_init, "cublasLtMatmulPreferenceInit_internal");
    sym(a.pref_set, "cublasLtMatmulPreferenceSetAttribute");
    sym(a.heuristic, "cublasLtMatmulAlgoGetHeuristic");
    sym(a.matmul, "cublasLtMatmul");
    if (!ok) a.create = nullptr;
  });
  *why = error.c_str();
  return a.create ? &a : nullptr;
}

}  // namespace lt

#ifdef VT_CUBLASLT_HEADER  // the toolkit has cuBLAS: check every declaration above against it
#include <cublasLt.h>

static_assert(sizeof(lt::MatmulDesc) == sizeof(cublasLtMatmulDescOpaque_t), "cublasLtMatmulDescOpaque_t");
static_assert(sizeof(lt::MatrixLayout) == sizeof(cublasLtMatrixLayoutOpaque_t), "cublasLtMatrixLayoutOpaque_t");
static_assert(sizeof(lt::Preference) == sizeof(cublasLtMatmulPreferenceOpaque_t), "cublasLtMatmulPreferenceOpaque_t");
static_assert(sizeof(lt::Algo) == sizeof(cublasLtMatmulAlgo_t), "cublasLtMatmulAlgo_t");
static_assert(sizeof(lt::HeuristicResult) == sizeof(cublasLtMatmulHeuristicResult_t) &&
                  offsetof(lt::HeuristicResult, workspace_size) == offsetof(cublasLtMatmulHeuristicResult_t, workspaceSize),
              "cublasLtMatmulHeuristicResult_t");
static_assert(sizeof(cublasStatus_t) == sizeof(lt::Status) && sizeof(cublasComputeType_t) == sizeof(int) &&
                  sizeof(cublasLtMatmulDescAttributes_t) == sizeof(int), "enum sizes");
static_assert(lt::kSuccess == CUBLAS_STATUS_SUCCESS && lt::kNotSupported == CUBLAS_STATUS_NOT_SUPPORTED, "status");
static_assert(lt::kCompute32F == CUBLAS_COMPUTE_32F && lt::kCompute32FFastTF32 == CUBLAS_COMPUTE_32F_FAST_TF32 &&
                  lt::kCompute64F == CUBLAS_COMPUTE_64F, "compute types");
static_assert(lt::kOpN == CUBLAS_OP_N && lt::kOpT == CUBLAS_OP_T, "operations");
static_assert(lt::kDescTransA == CUBLASLT_MATMUL_DESC_TRANSA && lt::kDescTransB == CUBLASLT_MATMUL_DESC_TRANSB &&
                  lt::kDescEpilogue == CUBLASLT_MATMUL_DESC_EPILOGUE &&
                  lt::kDescBiasPointer == CUBLASLT_MATMUL_DESC_BIAS_POINTER, "matmul desc attributes");
static_assert(lt::kLayoutBatchCount == CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT &&
                  lt::kLayoutStridedBatchOffset == CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, "layout attributes");
static_assert(lt::kPrefMaxWorkspaceBytes == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES &&
                  lt::kPrefMinAlignA == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES &&
                  lt::kPrefMinAlignB == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES &&
                  lt::kPrefMinAlignC == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES &&
                  lt::kPrefMinAlignD == CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, "preference attributes");
static_assert(lt::kEpilogueBias == CUBLASLT_EPILOGUE_BIAS, "epilogue");
#endif  // VT_CUBLASLT_HEADER
