# VibeTensorConfig.cmake — the CMake side of the vibetensor op-pack SDK.
#
#   find_package(VibeTensor REQUIRED)          # VibeTensor_DIR = <sdk>/cmake
#   vt_add_oppack(NAME mypack VERSION 0.1.0 SOURCES src/mypack.cpp)
#
# Works from the source tree (opsdk/cmake) and installed (site-packages/vibetensor/sdk/cmake): the
# headers are always at ../include and the tools at ../tools relative to this file. The package
# version is the op-pack ABI version (VT_ABI_MAJOR.VT_ABI_MINOR, read from vt/oppack.h).
#
# Defines:
#   VibeTensor_INCLUDE_DIR   the SDK include dir (vt/oppack.h, vt/oppack.hpp)
#   VibeTensor_TOOLS_DIR     the SDK tools dir (describe.c)
#   VibeTensor_ABI_VERSION   "major.minor"
#   VibeTensor::sdk          INTERFACE target carrying the include dir
#   vt_add_oppack(...)       see VibeTensorOpPack.cmake
cmake_minimum_required(VERSION 3.19)  # string(JSON), CUDA_ARCHITECTURES

get_filename_component(VibeTensor_SDK_DIR "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
set(VibeTensor_INCLUDE_DIR "${VibeTensor_SDK_DIR}/include")
set(VibeTensor_TOOLS_DIR "${VibeTensor_SDK_DIR}/tools")
set(VibeTensor_INCLUDE_DIRS "${VibeTensor_INCLUDE_DIR}")

if(NOT EXISTS "${VibeTensor_INCLUDE_DIR}/vt/oppack.h")
  set(VibeTensor_FOUND FALSE)
  set(VibeTensor_NOT_FOUND_MESSAGE "vt/oppack.h not found under ${VibeTensor_INCLUDE_DIR}")
  return()
endif()

file(STRINGS "${VibeTensor_INCLUDE_DIR}/vt/oppack.h" _vt_abi_lines REGEX "^#define VT_ABI_(MAJOR|MINOR) ")
string(REGEX REPLACE ".*VT_ABI_MAJOR ([0-9]+).*" "\\1" _vt_abi_major "${_vt_abi_lines}")
string(REGEX REPLACE ".*VT_ABI_MINOR ([0-9]+).*" "\\1" _vt_abi_minor "${_vt_abi_lines}")
set(VibeTensor_ABI_VERSION "${_vt_abi_major}.${_vt_abi_minor}")

if(NOT TARGET VibeTensor::sdk)
  add_library(VibeTensor::sdk INTERFACE IMPORTED GLOBAL)
  set_target_properties(VibeTensor::sdk PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${VibeTensor_INCLUDE_DIR}")
endif()

# CUDA op packs target sm_90 (H100) unless the user says otherwise (-DCMAKE_CUDA_ARCHITECTURES=...,
# CUDAARCHS in the environment, or CUDA_ARCHITECTURES on vt_add_oppack). Set before any
# enable_language(CUDA) so CMake does not pick the compiler's default instead.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
  set(CMAKE_CUDA_ARCHITECTURES 90 CACHE STRING "CUDA architectures for op packs")
endif()

include("${CMAKE_CURRENT_LIST_DIR}/VibeTensorOpPack.cmake")
set(VibeTensor_FOUND TRUE)
