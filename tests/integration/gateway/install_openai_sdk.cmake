# Installs the official `openai` npm package (pinned) into DEST for openai_sdk_test:
#   cmake -DDEST=<build>/npm/openai-sdk -P install_openai_sdk.cmake
# Kept when already installed at that version, so only the first run needs the registry.
cmake_minimum_required(VERSION 3.18)
set(OPENAI_VERSION 6.30.1)
if(NOT DEFINED DEST)
  message(FATAL_ERROR "install_openai_sdk.cmake: -DDEST=... is required")
endif()
set(manifest ${DEST}/node_modules/openai/package.json)
if(EXISTS ${manifest})
  file(READ ${manifest} text)
  string(JSON installed GET "${text}" version)
  if(installed STREQUAL OPENAI_VERSION)
    message(STATUS "openai ${OPENAI_VERSION} already in ${DEST}")
    return()
  endif()
endif()
find_program(NPM npm)
if(NOT NPM)
  message(FATAL_ERROR "npm is needed to install the openai package")
endif()
file(MAKE_DIRECTORY ${DEST})
execute_process(
  COMMAND ${NPM} install --prefix ${DEST} --no-audit --no-fund --no-save openai@${OPENAI_VERSION}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT EXISTS ${manifest})
  message(FATAL_ERROR "npm install openai@${OPENAI_VERSION} failed (${rc}):\n${err}")
endif()
message(STATUS "openai ${OPENAI_VERSION} installed in ${DEST}")
