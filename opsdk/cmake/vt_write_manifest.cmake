# vt_write_manifest.cmake — cmake -P script run by vt_add_oppack() after every link of a pack.
#
# In: DESCRIBE (vt_describe), LIBRARY (the pack's .so), NAME, VERSION, OUTPUT (manifest.json),
#     LIBRARY_PATH (optional, ':'-separated dirs prepended to LD_LIBRARY_PATH for vt_describe),
#     CUDA_ARCHITECTURES (optional, space-separated: the CUDA_ARCHITECTURES the library was built for).
# Runs vt_describe on the library (the pack's own registrations, as JSON), then adds name,
# version, library file name and sha256, and writes OUTPUT atomically. On failure OUTPUT is
# removed, so the next build tries again.
cmake_minimum_required(VERSION 3.19)
foreach(var DESCRIBE LIBRARY NAME VERSION OUTPUT)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "vt_write_manifest.cmake: -D${var}=... is required")
  endif()
endforeach()

if(LIBRARY_PATH)
  if(DEFINED ENV{LD_LIBRARY_PATH} AND NOT "$ENV{LD_LIBRARY_PATH}" STREQUAL "")
    set(ENV{LD_LIBRARY_PATH} "${LIBRARY_PATH}:$ENV{LD_LIBRARY_PATH}")
  else()
    set(ENV{LD_LIBRARY_PATH} "${LIBRARY_PATH}")
  endif()
endif()

file(REMOVE "${OUTPUT}")
execute_process(
  COMMAND "${DESCRIBE}" "${LIBRARY}"
  OUTPUT_VARIABLE described
  ERROR_VARIABLE errors
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(NOTICE "${errors}")  # unwrapped, as vt_describe wrote it
  message(FATAL_ERROR "op pack '${NAME}': vt_describe could not read the library (exit ${rc}); no manifest written")
endif()
if(errors)
  message(WARNING "op pack '${NAME}': ${errors}")
endif()

string(JSON abi_type ERROR_VARIABLE json_error TYPE "${described}" abi)
if(json_error OR NOT described MATCHES "^{\n")
  message(FATAL_ERROR "op pack '${NAME}': vt_describe printed something that is not its JSON:\n${described}")
endif()
string(JSON nops LENGTH "${described}" ops)
string(JSON nkernels LENGTH "${described}" kernels)
if(nops EQUAL 0 AND nkernels EQUAL 0)
  message(WARNING "op pack '${NAME}': vt_oppack_init registered no ops and no kernels")
endif()

# a declared capabilities block (vt/capabilities.h) must be a JSON object; the registry checks the rest
string(JSON caps_type ERROR_VARIABLE caps_error TYPE "${described}" capabilities)
if(NOT caps_error AND NOT caps_type STREQUAL "OBJECT")
  message(FATAL_ERROR "op pack '${NAME}': VT_OPPACK_CAPABILITIES must declare a JSON object, got ${caps_type}")
elseif(caps_error AND NOT caps_error MATCHES "not found")
  message(FATAL_ERROR "op pack '${NAME}': VT_OPPACK_CAPABILITIES is not valid JSON: ${caps_error}")
endif()

set(archs_json "")
if(CUDA_ARCHITECTURES)
  string(REPLACE " " "\", \"" archs_json "${CUDA_ARCHITECTURES}")
  set(archs_json "  \"cuda_architectures\": [\"${archs_json}\"],\n")
endif()

file(SHA256 "${LIBRARY}" sha)
get_filename_component(libname "${LIBRARY}" NAME)
string(SUBSTRING "${described}" 2 -1 rest)  # drop the opening "{\n"
set(manifest "{\n  \"name\": \"${NAME}\",\n  \"version\": \"${VERSION}\",\n  \"library\": \"${libname}\",\n  \"sha256\": \"${sha}\",\n${archs_json}${rest}")
file(WRITE "${OUTPUT}.tmp" "${manifest}")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
