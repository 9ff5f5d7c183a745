# iotinfer_module(NAME <name> SOURCES ... [DEPS <module>...] [LIBS <third-party>...])
#
# Declares the module target iotinfer_<name> (alias iotinfer::<name>) and enforces the
# layering of src/README.md: a module may depend only on the project modules listed for it
# in IOTINFER_ALLOWED_DEPS_<name>. Breaking the rule fails the configure step.
function(iotinfer_module)
  cmake_parse_arguments(M "" "NAME" "SOURCES;DEPS;LIBS" ${ARGN})
  set(allowed "${IOTINFER_ALLOWED_DEPS_${M_NAME}}")
  foreach(dep IN LISTS M_DEPS)
    if(NOT dep IN_LIST allowed)
      message(FATAL_ERROR "module '${M_NAME}' may not depend on '${dep}' "
                          "(allowed: ${allowed}); see src/README.md")
    endif()
  endforeach()
  add_library(iotinfer_${M_NAME} OBJECT ${M_SOURCES})
  add_library(iotinfer::${M_NAME} ALIAS iotinfer_${M_NAME})
  target_include_directories(iotinfer_${M_NAME} PUBLIC "${PROJECT_SOURCE_DIR}/src")
  list(TRANSFORM M_DEPS PREPEND "iotinfer_")
  target_link_libraries(iotinfer_${M_NAME} PUBLIC ${M_DEPS} PRIVATE fmt::fmt ${M_LIBS})
  iotinfer_warnings(iotinfer_${M_NAME})
  set_property(GLOBAL APPEND PROPERTY IOTINFER_MODULES iotinfer_${M_NAME})
endfunction()

function(iotinfer_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow
                                           -Wnon-virtual-dtor
                                           -Wno-missing-field-initializers)
  if(IOTINFER_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(IOTINFER_SANITIZE)
    # GCC's instrumentation makes its flow analysis report uninitialized reads in libstdc++
    # (std::regex's states) that are not there; GCC's manual warns of such false positives.
    target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized)
  endif()
endfunction()
