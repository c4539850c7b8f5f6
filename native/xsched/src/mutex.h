// mutex.h: a std::mutex wrapper with Clang thread-safety annotations.
#ifndef XSCHED_SRC_MUTEX_H_
#define XSCHED_SRC_MUTEX_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define XSCHED_TSA(x) __attribute__((x))
#else
#define XSCHED_TSA(x)
#endif

// XSCHED_CAPABILITY marks a class as a lockable capability.
#define XSCHED_CAPABILITY(x) XSCHED_TSA(capability(x))
// XSCHED_SCOPED_CAPABILITY marks an RAII lock class.
#define XSCHED_SCOPED_CAPABILITY XSCHED_TSA(scoped_lockable)
// XSCHED_GUARDED_BY marks a member that may only be touched with the mutex held.
#define XSCHED_GUARDED_BY(x) XSCHED_TSA(guarded_by(x))
// XSCHED_REQUIRES marks a function that must be called with the mutex held.
#define XSCHED_REQUIRES(...) XSCHED_TSA(requires_capability(__VA_ARGS__))
// XSCHED_EXCLUDES marks a function that must be called without the mutex held.
#define XSCHED_EXCLUDES(...) XSCHED_TSA(locks_excluded(__VA_ARGS__))
// XSCHED_ACQUIRE marks a function that takes the mutex.
#define XSCHED_ACQUIRE(...) XSCHED_TSA(acquire_capability(__VA_ARGS__))
// XSCHED_RELEASE marks a function that releases the mutex.
#define XSCHED_RELEASE(...) XSCHED_TSA(release_capability(__VA_ARGS__))

namespace xsched {

// Mutex is a std::mutex that Clang's -Wthread-safety can reason about.
class XSCHED_CAPABILITY("mutex") Mutex {
public:
    // lock() takes the mutex.
    void lock() XSCHED_ACQUIRE() { m_.lock(); }
    // unlock() releases the mutex.
    void unlock() XSCHED_RELEASE() { m_.unlock(); }
    // native() exposes the std::mutex for condition variables.
    std::mutex &native() { return m_; }

private:
    std::mutex m_;
};

// Lock holds a Mutex for its scope and can wait on a condition variable.
class XSCHED_SCOPED_CAPABILITY Lock {
public:
    // Lock() takes m.
    explicit Lock(Mutex &m) XSCHED_ACQUIRE(m) : lk_(m.native()) {}
    // ~Lock() releases the mutex if still held.
    ~Lock() XSCHED_RELEASE() {}
    // Unlock() releases the mutex early (e.g. before a blocking platform call).
    void Unlock() XSCHED_RELEASE() { lk_.unlock(); }
    // Relock() takes the mutex again after Unlock().
    void Relock() XSCHED_ACQUIRE() { lk_.lock(); }
    // Wait() waits on cv, releasing the mutex meanwhile.
    void Wait(std::condition_variable &cv) { cv.wait(lk_); }
    // WaitUntil() waits on cv until t at the latest; returns false on timeout.
    template <class Clock, class Dur>
    bool WaitUntil(std::condition_variable &cv, const std::chrono::time_point<Clock, Dur> &t) {
        return cv.wait_until(lk_, t) == std::cv_status::no_timeout;
    }

    Lock(const Lock &) = delete;
    Lock &operator=(const Lock &) = delete;

private:
    std::unique_lock<std::mutex> lk_;
};

}  // namespace xsched

#endif  // XSCHED_SRC_MUTEX_H_
