#include "graph/event_registry.h"

#include "common/error.h"

namespace kiln {

EventRegistry& EventRegistry::instance() {
  static EventRegistry* registry = new EventRegistry();  // never destroyed: hooks may run at exit
  return *registry;
}

void EventRegistry::on_eager_use(CUevent event, const char* call) {
  if (!event) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (eager_.size() < kCapacity) eager_.try_emplace(event, call);
  else if (!eager_.count(event)) overflowed_ = true;
  if (violation_.empty()) {
    auto it = claimed_.find(event);
    if (it != claimed_.end())
      violation_ = format("%s is also used outside the graph (%s after the capture): a restored graph would get a "
                          "private event and lose that synchronisation",
                          it->second.where.c_str(), call);
  }
}

void EventRegistry::claim(CUevent event, const void* graph, const std::string& where) {
  std::lock_guard<std::mutex> lock(mu_);
  if (overflowed_)
    throw Error(ErrorKind::non_persistable,
                format("%s uses an event, and more than %zu events were used outside graphs: kiln cannot tell "
                       "whether code outside the graph shares it",
                       where.c_str(), kCapacity));
  if (auto it = eager_.find(event); it != eager_.end())
    throw Error(ErrorKind::non_persistable,
                format("%s uses an event that code outside the graph also used (%s): a restored graph would get a "
                       "private event and lose that synchronisation",
                       where.c_str(), it->second));
  auto [it, added] = claimed_.try_emplace(event, Claim{graph, where});
  if (!added && it->second.graph != graph)
    throw Error(ErrorKind::non_persistable,
                format("%s uses an event that another captured graph also uses (%s): restored graphs get private "
                       "events and would lose that synchronisation",
                       where.c_str(), it->second.where.c_str()));
}

std::string EventRegistry::violation() const {
  std::lock_guard<std::mutex> lock(mu_);
  return violation_;
}

void EventRegistry::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  eager_.clear();
  claimed_.clear();
  violation_.clear();
  overflowed_ = false;
}

}  // namespace kiln
