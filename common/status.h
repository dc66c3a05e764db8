// Status helpers: RETURN_IF_ERROR / ASSIGN_OR_RETURN over absl::Status and absl::StatusOr.
// Stateless; safe from any thread.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define AFD_STATUS_CONCAT_INNER_(a, b) a##b
#define AFD_STATUS_CONCAT_(a, b) AFD_STATUS_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function if `expr` is not OK.
#define RETURN_IF_ERROR(expr)                         \
  do {                                                \
    ::absl::Status afd_status_ = (expr);              \
    if (!afd_status_.ok()) return afd_status_;        \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, Foo());` declares/assigns x from a StatusOr or returns its error.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  AFD_ASSIGN_OR_RETURN_IMPL_(AFD_STATUS_CONCAT_(afd_statusor_, __LINE__), lhs, rexpr)

#define AFD_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                               \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()
