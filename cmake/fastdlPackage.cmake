# Installs the C++ kernel library as a CMake package, so that C++ programs can use
#   find_package(fastdl CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE fastdl::kernels)
# Included at the end of the top-level CMakeLists.txt, after fastdl_kernels exists.
# FASTDL_INSTALL_CPP_PACKAGE=OFF keeps the target but installs none of it.
#
# Layout (relative to the install prefix):
#   wheel (scikit-build-core, prefix = site-packages):
#     fastdl/include/fastdl/*.h   fastdl/lib/libfastdl_kernels.a   fastdl/share/cmake/fastdl/
#   plain `cmake --install build --prefix P`:
#     P/include/fastdl/*.h        P/lib/libfastdl_kernels.a        P/lib/cmake/fastdl/
# fastdl.get_include() / fastdl.get_cmake_dir() return the wheel's directories.

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# One version for Python and C++: fastdl/__init__.py's __version__ (scikit-build-core
# reads the same line for the wheel's metadata: pyproject.toml's
# [tool.scikit-build.metadata.version]).
if(DEFINED SKBUILD_PROJECT_VERSION)
  set(FASTDL_VERSION "${SKBUILD_PROJECT_VERSION}")
else()
  file(STRINGS "${PROJECT_SOURCE_DIR}/fastdl/__init__.py" _fastdl_version_line
       REGEX "^__version__[ \t]*=[ \t]*\"[^\"]+\"")
  string(REGEX REPLACE "^__version__[ \t]*=[ \t]*\"([^\"]+)\".*" "\\1" FASTDL_VERSION
         "${_fastdl_version_line}")
endif()
if(NOT FASTDL_VERSION MATCHES "^[0-9]+\\.[0-9]+\\.[0-9]+")
  message(FATAL_ERROR "fastdl: could not read __version__ from fastdl/__init__.py (got '${FASTDL_VERSION}')")
endif()

if(SKBUILD)
  set(FASTDL_INSTALL_INCLUDEDIR "fastdl/include")
  set(FASTDL_INSTALL_LIBDIR "fastdl/lib")
  set(FASTDL_INSTALL_CMAKEDIR "fastdl/share/cmake/fastdl")
else()
  set(FASTDL_INSTALL_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
  set(FASTDL_INSTALL_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
  set(FASTDL_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/fastdl")
endif()

# The exported name is fastdl::kernels; the same alias works for add_subdirectory users.
set_target_properties(fastdl_kernels PROPERTIES EXPORT_NAME kernels)
add_library(fastdl::kernels ALIAS fastdl_kernels)
target_include_directories(fastdl_kernels PUBLIC
  $<INSTALL_INTERFACE:${FASTDL_INSTALL_INCLUDEDIR}>)
# The public headers are C++17 (nested namespaces, constexpr); say so to consumers.
target_compile_features(fastdl_kernels PUBLIC cxx_std_17)

option(FASTDL_INSTALL_CPP_PACKAGE "Install the C++ headers, library and CMake package" ON)
if(NOT FASTDL_INSTALL_CPP_PACKAGE)
  return()
endif()

if(TARGET OpenMP::OpenMP_CXX)
  set(FASTDL_WITH_OPENMP ON)
else()
  set(FASTDL_WITH_OPENMP OFF)
endif()

install(TARGETS fastdl_kernels
        EXPORT fastdlTargets
        ARCHIVE DESTINATION "${FASTDL_INSTALL_LIBDIR}"
        LIBRARY DESTINATION "${FASTDL_INSTALL_LIBDIR}")
# The whole public include directory: every header added there ships.
install(DIRECTORY "${PROJECT_SOURCE_DIR}/csrc/include/fastdl"
        DESTINATION "${FASTDL_INSTALL_INCLUDEDIR}"
        FILES_MATCHING PATTERN "*.h" PATTERN "*.hpp")
install(EXPORT fastdlTargets
        NAMESPACE fastdl::
        FILE fastdlTargets.cmake
        DESTINATION "${FASTDL_INSTALL_CMAKEDIR}")

configure_package_config_file(
  "${PROJECT_SOURCE_DIR}/cmake/fastdlConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/fastdlConfig.cmake"
  INSTALL_DESTINATION "${FASTDL_INSTALL_CMAKEDIR}")
# 0.x: a minor version may change the API, so only the same minor version matches.
write_basic_package_version_file(
  "${PROJECT_BINARY_DIR}/fastdlConfigVersion.cmake"
  VERSION "${FASTDL_VERSION}"
  COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/fastdlConfig.cmake"
              "${PROJECT_BINARY_DIR}/fastdlConfigVersion.cmake"
        DESTINATION "${FASTDL_INSTALL_CMAKEDIR}")
