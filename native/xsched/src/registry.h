// registry.h: handle tables that turn C handles into live objects.
#ifndef XSCHED_SRC_REGISTRY_H_
#define XSCHED_SRC_REGISTRY_H_

#include <cstdint>
#include <map>
#include <memory>

#include "mutex.h"

namespace xsched {

class HwQueue;
class XQueue;
struct Command;

// HandleTable maps opaque 64-bit handles to shared objects. Handles carry a
// type tag in the top byte and are never reused, so a stale or foreign handle
// is simply not found (no pointer is ever derived from a handle).
template <class T>
class HandleTable {
public:
    // HandleTable() makes an empty table whose handles carry `tag`.
    explicit HandleTable(uint64_t tag) : tag_(tag << 56) {}
    // Insert() registers obj, sets obj->handle (before publication) and returns it.
    uint64_t Insert(std::shared_ptr<T> obj) {
        Lock l(mu_);
        uint64_t h = tag_ | (next_++ & 0x00ffffffffffffffull);
        obj->handle = h;
        map_.emplace(h, std::move(obj));
        return h;
    }
    // Find() returns the object of h, or null.
    std::shared_ptr<T> Find(uint64_t h) {
        Lock l(mu_);
        auto it = map_.find(h);
        return it == map_.end() ? nullptr : it->second;
    }
    // Remove() unregisters h and returns its object (null if absent).
    std::shared_ptr<T> Remove(uint64_t h) {
        Lock l(mu_);
        auto it = map_.find(h);
        if (it == map_.end()) return nullptr;
        std::shared_ptr<T> obj = std::move(it->second);
        map_.erase(it);
        return obj;
    }

private:
    const uint64_t tag_;
    Mutex mu_;
    uint64_t next_ XSCHED_GUARDED_BY(mu_) = 1;
    std::map<uint64_t, std::shared_ptr<T>> map_ XSCHED_GUARDED_BY(mu_);
};

// HwQueues() is the process-wide table of HwQueues.
HandleTable<HwQueue> &HwQueues();
// XQueues() is the process-wide table of XQueues.
HandleTable<XQueue> &XQueues();
// Commands() is the process-wide table of created, unsubmitted commands.
HandleTable<Command> &Commands();
// BindMutex() serialises binding XQueues to HwQueues (create/destroy).
Mutex &BindMutex();

}  // namespace xsched

#endif  // XSCHED_SRC_REGISTRY_H_
