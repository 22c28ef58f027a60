// Run-time levelled logging to stderr. The level comes from KILN_LOG_LEVEL (off, error, warn
// or warning, info, debug, trace, any case; default warn), the variable kiln.config reads
// for Python's log level too (KILN_LOG, its deprecated name, when it is unset), and can be
// changed later through set_log_level.
#pragma once

#include <cstdarg>

namespace kiln {

enum class LogLevel : int { off = 0, error = 1, warn = 2, info = 3, debug = 4, trace = 5 };

LogLevel log_level();
void set_log_level(LogLevel level);
bool parse_log_level(const char* text, LogLevel* out);
void log_message(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace kiln

#define KILN_LOG(level, ...)                                            \
  do {                                                                  \
    if (static_cast<int>(::kiln::log_level()) >= static_cast<int>(level)) \
      ::kiln::log_message(level, __VA_ARGS__);                          \
  } while (0)
#define KILN_ERROR(...) KILN_LOG(::kiln::LogLevel::error, __VA_ARGS__)
#define KILN_WARN(...) KILN_LOG(::kiln::LogLevel::warn, __VA_ARGS__)
#define KILN_INFO(...) KILN_LOG(::kiln::LogLevel::info, __VA_ARGS__)
#define KILN_DEBUG(...) KILN_LOG(::kiln::LogLevel::debug, __VA_ARGS__)
#define KILN_TRACE(...) KILN_LOG(::kiln::LogLevel::trace, __VA_ARGS__)
