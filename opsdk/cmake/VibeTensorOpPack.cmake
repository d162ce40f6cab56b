# VibeTensorOpPack.cmake — vt_add_oppack(): one call turns sources into an op pack.
#
#   vt_add_oppack(NAME <name> VERSION <version>
#                 SOURCES <file>...
#                 [CUDA_SOURCES <file>...]          # compiled only where a CUDA compiler is found
#                 [LINK_LIBRARIES <lib>...]          # linked PRIVATE
#                 [CUDA_ARCHITECTURES <arch>...]     # default: CMAKE_CUDA_ARCHITECTURES (-D or the
#                                                    # CUDAARCHS environment variable), else 90
#                 [INSTALL_DIR <dir>]                # install library + manifest.json there
#                 [OUTPUT_DIRECTORY <dir>])          # default: ${CMAKE_BINARY_DIR}/packs/<name>
#
# Makes the shared library target vt_<name> (libvt_<name>.so, C++17, hidden visibility, PIC,
# -O3 when no build type is given, no -march so binaries stay portable) and a target
# vt_<name>_manifest (part of ALL) that writes <output dir>/manifest.json whenever the library is
# relinked: it runs vt_describe (opsdk/tools/describe.c, built once per build tree) on the library,
# which records what vt_oppack_init registers, and vt_write_manifest.cmake adds name, version,
# library file name and sha256. The output dir is then a complete pack folder: load it with
# vibetensor.ops.load(<dir>).
#
# Sources get VT_PACK_NAME / VT_PACK_VERSION (string literals) defined, and VT_WITH_CUDA when the
# CUDA sources are compiled in. CUDA sources are C++17 and see the SDK's CUDA headers
# (vt/cuda/launch.cuh, elementwise.cuh, reduce.cuh); they are compiled for sm_90 (Hopper) unless
# CUDA_ARCHITECTURES / CMAKE_CUDA_ARCHITECTURES / CUDAARCHS say otherwise (e.g. "80;90", native).
# Leave CUDA out of your project()'s LANGUAGES: this function enables it only where nvcc exists.
#
# vt_add_oppack is a macro only because enable_language(C/CUDA) must run at directory scope; the
# work happens in the function _vt_add_oppack_impl.

set(_VT_SDK_DIR "${CMAKE_CURRENT_LIST_DIR}/.." CACHE INTERNAL "vibetensor op-pack SDK dir")
get_filename_component(_VT_SDK_DIR "${_VT_SDK_DIR}" ABSOLUTE)

# Finds nvcc where check_language() alone would miss it (CUDA_HOME, /usr/local/cuda).
function(_vt_locate_cuda_compiler)
  if(DEFINED CMAKE_CUDA_COMPILER OR DEFINED ENV{CUDACXX})
    return()
  endif()
  find_program(_vt_nvcc nvcc)
  if(NOT _vt_nvcc)
    foreach(root "$ENV{CUDA_HOME}" "$ENV{CUDA_PATH}" "/usr/local/cuda")
      if(root AND EXISTS "${root}/bin/nvcc")
        set(CMAKE_CUDA_COMPILER "${root}/bin/nvcc" CACHE FILEPATH "CUDA compiler")
        break()
      endif()
    endforeach()
  endif()
  unset(_vt_nvcc CACHE)
endfunction()

macro(vt_add_oppack)
  cmake_parse_arguments(_vt_m "" "" "CUDA_SOURCES" ${ARGN})
  if(NOT CMAKE_C_COMPILER_LOADED)
    enable_language(C) # for vt_describe
  endif()
  set(_vt_m_cuda OFF)
  if(_vt_m_CUDA_SOURCES)
    if(NOT CMAKE_CUDA_COMPILER_LOADED)
      _vt_locate_cuda_compiler()
      include(CheckLanguage)
      check_language(CUDA)
      if(CMAKE_CUDA_COMPILER)
        # before enable_language, which would otherwise fill in nvcc's own default (an old arch)
        if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
          set(CMAKE_CUDA_ARCHITECTURES 90 CACHE STRING "CUDA architectures of op packs (vt-ops build --cuda-arch)")
        endif()
        enable_language(CUDA)
      endif()
    endif()
    if(CMAKE_CUDA_COMPILER_LOADED)
      if(NOT TARGET CUDA::cudart_static)
        find_package(CUDAToolkit QUIET)
      endif()
      if(TARGET CUDA::cudart_static)
        set(_vt_m_cuda ON)
      else()
        message(STATUS "vt_add_oppack: CUDA compiler found but not the CUDA runtime library (CUDAToolkit)")
      endif()
    endif()
  endif()
  _vt_add_oppack_impl(${_vt_m_cuda} ${ARGN})
  unset(_vt_m_cuda)
  unset(_vt_m_CUDA_SOURCES)
  unset(_vt_m_UNPARSED_ARGUMENTS)
  unset(_vt_m_KEYWORDS_MISSING_VALUES)
endmacro()

function(_vt_add_oppack_impl with_cuda)
  cmake_parse_arguments(PARSE_ARGV 1 arg ""
    "NAME;VERSION;INSTALL_DIR;OUTPUT_DIRECTORY"
    "SOURCES;CUDA_SOURCES;LINK_LIBRARIES;CUDA_ARCHITECTURES")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "vt_add_oppack: unexpected arguments: ${arg_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT arg_NAME MATCHES "^[a-z_][a-z0-9_]*$")
    message(FATAL_ERROR "vt_add_oppack: NAME '${arg_NAME}' must be a lowercase identifier ([a-z_][a-z0-9_]*)")
  endif()
  if(NOT arg_VERSION MATCHES "^[0-9A-Za-z.+_-]+$")
    message(FATAL_ERROR "vt_add_oppack(${arg_NAME}): VERSION is required (e.g. 0.1.0), got '${arg_VERSION}'")
  endif()
  if(NOT arg_SOURCES AND NOT arg_CUDA_SOURCES)
    message(FATAL_ERROR "vt_add_oppack(${arg_NAME}): no SOURCES given")
  endif()

  set(tgt "vt_${arg_NAME}")
  set(outdir "${arg_OUTPUT_DIRECTORY}")
  if(NOT outdir)
    set(outdir "${CMAKE_BINARY_DIR}/packs/${arg_NAME}")
  endif()
  get_filename_component(outdir "${outdir}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_BINARY_DIR}")

  set(srcs ${arg_SOURCES})
  if(arg_CUDA_SOURCES)
    if(with_cuda)
      list(APPEND srcs ${arg_CUDA_SOURCES})
    else()
      message(STATUS "vt_add_oppack(${arg_NAME}): no CUDA compiler found, building without: ${arg_CUDA_SOURCES}")
    endif()
  endif()
  if(NOT srcs)
    message(FATAL_ERROR "vt_add_oppack(${arg_NAME}): only CUDA_SOURCES given and no CUDA compiler found")
  endif()

  add_library(${tgt} SHARED ${srcs})
  set_target_properties(${tgt} PROPERTIES
    PREFIX "lib"
    OUTPUT_NAME "vt_${arg_NAME}"
    LIBRARY_OUTPUT_DIRECTORY "$<1:${outdir}>"   # the genex stops multi-config generators adding a subdir
    RUNTIME_OUTPUT_DIRECTORY "$<1:${outdir}>"
    CXX_STANDARD 17
    CXX_STANDARD_REQUIRED ON
    CXX_EXTENSIONS OFF
    CUDA_STANDARD 17
    CUDA_STANDARD_REQUIRED ON
    C_VISIBILITY_PRESET hidden
    CXX_VISIBILITY_PRESET hidden
    CUDA_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    POSITION_INDEPENDENT_CODE ON
    VT_PACK_NAME "${arg_NAME}"
    VT_PACK_VERSION "${arg_VERSION}"
    VT_PACK_DIR "${outdir}")
  target_include_directories(${tgt} PRIVATE "${_VT_SDK_DIR}/include")
  target_compile_definitions(${tgt} PRIVATE
    "VT_PACK_NAME=\"${arg_NAME}\"" "VT_PACK_VERSION=\"${arg_VERSION}\""
    $<$<CONFIG:>:NDEBUG>)
  # no build type at all: still optimise (CMake's empty config has no -O flags)
  if(NOT MSVC)
    target_compile_options(${tgt} PRIVATE $<$<CONFIG:>:-O3>)
  endif()
  if(CMAKE_SYSTEM_NAME STREQUAL "Linux")
    # an unresolved symbol fails the link with a clear message instead of failing dlopen later
    target_link_options(${tgt} PRIVATE "LINKER:--no-undefined")
  endif()
  if(arg_LINK_LIBRARIES)
    target_link_libraries(${tgt} PRIVATE ${arg_LINK_LIBRARIES})
  endif()

  set(libdirs "")
  if(with_cuda AND arg_CUDA_SOURCES)
    target_compile_definitions(${tgt} PRIVATE VT_WITH_CUDA)
    target_link_libraries(${tgt} PRIVATE CUDA::cudart_static)
    if(arg_CUDA_ARCHITECTURES)
      set_target_properties(${tgt} PROPERTIES CUDA_ARCHITECTURES "${arg_CUDA_ARCHITECTURES}")
    elseif(NOT CMAKE_CUDA_ARCHITECTURES)
      set_target_properties(${tgt} PROPERTIES CUDA_ARCHITECTURES 90)
    endif()
    list(APPEND libdirs "$<TARGET_FILE_DIR:CUDA::cudart_static>")
  endif()

  if(arg_INSTALL_DIR)
    # the installed file must be byte-identical to the one the manifest hashes: no RPATH rewrite
    # at install time. Set INSTALL_RPATH on the target ($ORIGIN-relative) for libraries it needs.
    set_target_properties(${tgt} PROPERTIES BUILD_WITH_INSTALL_RPATH ON)
  endif()

  # directories of linked shared libraries, so vt_describe can dlopen the pack in the build tree
  # even when its RPATH only makes sense once installed
  foreach(lib IN LISTS arg_LINK_LIBRARIES)
    if(TARGET "${lib}")
      get_target_property(type "${lib}" TYPE)
      get_target_property(imported "${lib}" IMPORTED)
      if(type STREQUAL "SHARED_LIBRARY" AND NOT imported)
        list(APPEND libdirs "$<TARGET_FILE_DIR:${lib}>")
      elseif(imported AND (type STREQUAL "SHARED_LIBRARY" OR type STREQUAL "UNKNOWN_LIBRARY"))
        get_target_property(loc "${lib}" IMPORTED_LOCATION)
        if(loc)
          get_filename_component(dir "${loc}" DIRECTORY)
          list(APPEND libdirs "${dir}")
        endif()
      endif()
    elseif(IS_ABSOLUTE "${lib}")
      get_filename_component(dir "${lib}" DIRECTORY)
      list(APPEND libdirs "${dir}")
    endif()
  endforeach()
  list(REMOVE_DUPLICATES libdirs)
  string(REPLACE ";" ":" libpath "${libdirs}")

  # the GPU code the library holds, recorded in the manifest so the registry can tell which
  # compute capabilities can run it (empty: no CUDA code compiled in)
  set(cuda_archs "")
  if(with_cuda AND arg_CUDA_SOURCES)
    set(cuda_archs "$<JOIN:$<TARGET_PROPERTY:${tgt},CUDA_ARCHITECTURES>, >")
  endif()

  # vt_describe: one per build tree
  if(NOT TARGET vt_describe)
    add_executable(vt_describe "${_VT_SDK_DIR}/tools/describe.c")
    target_include_directories(vt_describe PRIVATE "${_VT_SDK_DIR}/include")
    target_link_libraries(vt_describe PRIVATE ${CMAKE_DL_LIBS})
    set_target_properties(vt_describe PROPERTIES
      C_STANDARD 99
      C_STANDARD_REQUIRED ON
      EXCLUDE_FROM_ALL ON
      RUNTIME_OUTPUT_DIRECTORY "$<1:${CMAKE_BINARY_DIR}/vt_tools>")
  endif()

  set(manifest "${outdir}/manifest.json")
  add_custom_command(
    OUTPUT "${manifest}"
    COMMAND "${CMAKE_COMMAND}"
      "-DDESCRIBE=$<TARGET_FILE:vt_describe>"
      "-DLIBRARY=$<TARGET_FILE:${tgt}>"
      "-DNAME=${arg_NAME}"
      "-DVERSION=${arg_VERSION}"
      "-DOUTPUT=${manifest}"
      "-DLIBRARY_PATH=${libpath}"
      "-DCUDA_ARCHITECTURES=${cuda_archs}"
      -P "${_VT_SDK_DIR}/cmake/vt_write_manifest.cmake"
    DEPENDS ${tgt} vt_describe "${_VT_SDK_DIR}/cmake/vt_write_manifest.cmake"
    COMMENT "Describing op pack ${arg_NAME} -> ${manifest}"
    VERBATIM)
  add_custom_target(${tgt}_manifest ALL DEPENDS "${manifest}")

  if(arg_INSTALL_DIR)
    install(TARGETS ${tgt} LIBRARY DESTINATION "${arg_INSTALL_DIR}" RUNTIME DESTINATION "${arg_INSTALL_DIR}")
    install(FILES "${manifest}" DESTINATION "${arg_INSTALL_DIR}")
  endif()
endfunction()
