# Shared CMake helpers for afd.

# afd_add_test(NAME name SOURCES a.cc ... [LIBS lib ...] [LABELS unit|golden|integration]
#              [ARGS ...] [ASAN])
# Builds one gtest executable and registers it with ctest (llama.cpp's llama_build_and_test).
# ASAN additionally builds NAME_asan with -fsanitize=address,undefined from the same sources
# and the libraries' sources (LIBS must then be INTERFACE-free plain libraries listed in
# ASAN_SOURCES).
function(afd_add_test)
  cmake_parse_arguments(T "ASAN" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS;ARGS;ASAN_SOURCES" ${ARGN})
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main)
  target_include_directories(${T_NAME} PRIVATE ${PROJECT_SOURCE_DIR})
  add_test(NAME ${T_NAME} COMMAND ${T_NAME} ${T_ARGS} WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
  if(NOT T_LABELS)
    set(T_LABELS unit)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  set_tests_properties(${T_NAME} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
                       ENVIRONMENT "AFD_TEST_DATA=${PROJECT_SOURCE_DIR}/tests/data;AFD_BUILD_DIR=${PROJECT_BINARY_DIR}")
  if(T_ASAN AND AFD_ASAN)
    add_executable(${T_NAME}_asan ${T_SOURCES} ${T_ASAN_SOURCES})
    target_compile_options(${T_NAME}_asan PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer -O1)
    target_link_options(${T_NAME}_asan PRIVATE -fsanitize=address,undefined)
    target_include_directories(${T_NAME}_asan PRIVATE ${PROJECT_SOURCE_DIR})
    target_link_libraries(${T_NAME}_asan PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main)
    add_test(NAME ${T_NAME}_asan COMMAND ${T_NAME}_asan ${T_ARGS} WORKING_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR})
    set_tests_properties(${T_NAME}_asan PROPERTIES LABELS "${T_LABELS};asan" TIMEOUT ${T_TIMEOUT}
                         ENVIRONMENT "AFD_TEST_DATA=${PROJECT_SOURCE_DIR}/tests/data;AFD_BUILD_DIR=${PROJECT_BINARY_DIR}")
  endif()
endfunction()
