#include "common/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <strings.h>

namespace kiln {
namespace {

// The variable Python's kiln.config reads too (log_level); KILN_LOG is its deprecated name,
// read only when KILN_LOG_LEVEL is unset.
int initial_level() {
  LogLevel level = LogLevel::warn;
  const char* name = "KILN_LOG_LEVEL";
  const char* env = std::getenv(name);
  if (!env || !*env) {
    name = "KILN_LOG";
    env = std::getenv(name);
  }
  if (env && *env && !parse_log_level(env, &level)) {
    std::fprintf(stderr, "[kiln] warning: %s=%s is not one of off, error, warn, warning, info, debug, trace\n",
                 name, env);
  }
  return static_cast<int>(level);
}

std::atomic<int>& level_slot() {
  static std::atomic<int> slot{initial_level()};
  return slot;
}

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::error: return "error";
    case LogLevel::warn: return "warning";
    case LogLevel::info: return "info";
    case LogLevel::debug: return "debug";
    case LogLevel::trace: return "trace";
    default: return "";
  }
}

}  // namespace

LogLevel log_level() { return static_cast<LogLevel>(level_slot().load(std::memory_order_relaxed)); }

void set_log_level(LogLevel level) { level_slot().store(static_cast<int>(level), std::memory_order_relaxed); }

bool parse_log_level(const char* text, LogLevel* out) {
  static const struct { const char* name; LogLevel level; } names[] = {
      {"off", LogLevel::off},   {"error", LogLevel::error}, {"warn", LogLevel::warn},  {"warning", LogLevel::warn},
      {"info", LogLevel::info}, {"debug", LogLevel::debug}, {"trace", LogLevel::trace},
  };
  for (const auto& n : names) {
    if (strcasecmp(text, n.name) == 0) {
      *out = n.level;
      return true;
    }
  }
  return false;
}

void log_message(LogLevel level, const char* fmt, ...) {
  char buf[1024];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(buf, sizeof buf, fmt, args);
  va_end(args);
  std::fprintf(stderr, "[kiln] %s: %s\n", level_name(level), buf);
}

}  // namespace kiln
