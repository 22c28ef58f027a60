#include "graph/tensor_maps.h"

#include <cstring>
#include <string_view>

namespace kiln {

TensorMapRegistry& TensorMapRegistry::instance() {
  static TensorMapRegistry* registry = new TensorMapRegistry();  // never destroyed: hooks may run at exit
  return *registry;
}

size_t TensorMapRegistry::KeyHash::operator()(const Key& k) const {
  return std::hash<std::string_view>()(std::string_view(reinterpret_cast<const char*>(k.data()), k.size()));
}

void TensorMapRegistry::on_encode(const CUtensorMap* map, const void* address) {
  if (!map) return;
  Key key;
  std::memcpy(key.data(), map, key.size());
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, added] = addresses_.insert_or_assign(key, reinterpret_cast<uint64_t>(address));
  if (!added) return;
  order_.push_back(key);
  if (order_.size() > kCapacity) {
    addresses_.erase(order_.front());
    order_.pop_front();
  }
}

std::optional<uint64_t> TensorMapRegistry::address_of(const uint8_t* bytes) const {
  Key key;
  std::memcpy(key.data(), bytes, key.size());
  std::lock_guard<std::mutex> lock(mu_);
  if (addresses_.empty()) return std::nullopt;
  auto it = addresses_.find(key);
  if (it == addresses_.end()) return std::nullopt;
  return it->second;
}

size_t TensorMapRegistry::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return addresses_.size();
}

void TensorMapRegistry::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  addresses_.clear();
  order_.clear();
}

}  // namespace kiln
