// Events shared between captured graphs and the code around them. A restored graph gets
// private events, which is faithful only when nothing outside the graph records, waits on,
// queries or synchronises with the same event: eager uses are seen by the interposer's
// event wrappers, graph uses by the SAVE walk, and either order is refused by name.
#pragma once

#include <cuda.h>

#include <mutex>
#include <string>
#include <unordered_map>

namespace kiln {

class EventRegistry {
 public:
  static EventRegistry& instance();

  // A use outside any stream capture; `call` names the driver call.
  void on_eager_use(CUevent event, const char* call);
  // The SAVE walk of `graph` found an event node on `event` (`where` names it). Throws
  // Error(non_persistable) when the event was used eagerly or by another graph.
  void claim(CUevent event, const void* graph, const std::string& where);
  // The first eager use of a claimed event after its claim ("" when none): a graph kiln
  // recorded shares that event with code outside it.
  std::string violation() const;
  // Forget everything (tests).
  void clear();

  // Events are created for the life of a server: at most this many eager uses are kept. Past
  // it kiln can no longer prove an event unshared, and every later claim is refused.
  static constexpr size_t kCapacity = 1 << 18;

 private:
  struct Claim {
    const void* graph;
    std::string where;
  };
  mutable std::mutex mu_;
  std::unordered_map<CUevent, const char*> eager_;  // first eager call per event
  std::unordered_map<CUevent, Claim> claimed_;
  std::string violation_;
  bool overflowed_ = false;
};

}  // namespace kiln
