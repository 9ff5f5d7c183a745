// Linked into executables only under ThreadSanitizer (see CMakeLists.txt): C11's threads,
// mutexes and condition variables, with which librdkafka runs, re-expressed through
// pthreads, which ThreadSanitizer intercepts (glibc's C11 calls go to pthreads' internals,
// which it does not). Threads started here carry its state and their ends are seen; the
// locks below give it the order of what librdkafka hands between threads.
#include <pthread.h>
#include <threads.h>

#include <cerrno>
#include <cstdint>
#include <new>

namespace {

struct Start {
  thrd_start_t func;
  void* arg;
};

void* Trampoline(void* p) {
  const Start start = *static_cast<Start*>(p);
  delete static_cast<Start*>(p);
  // glibc's thrd_join takes the int back from the pointer-sized result.
  return reinterpret_cast<void*>(static_cast<intptr_t>(start.func(start.arg)));
}

}  // namespace

extern "C" int thrd_create(thrd_t* thread, thrd_start_t func, void* arg) {
  auto* start = new (std::nothrow) Start{func, arg};
  if (!start) return thrd_nomem;
  const int err = pthread_create(thread, nullptr, Trampoline, start);
  if (err == 0) return thrd_success;
  delete start;
  return err == EAGAIN || err == ENOMEM ? thrd_nomem : thrd_error;
}

extern "C" int thrd_join(thrd_t thread, int* result) {
  void* value = nullptr;
  if (pthread_join(thread, &value) != 0) return thrd_error;
  if (result) *result = static_cast<int>(reinterpret_cast<intptr_t>(value));
  return thrd_success;
}

extern "C" int thrd_detach(thrd_t thread) { return pthread_detach(thread) == 0 ? thrd_success : thrd_error; }

// The same for C11's mutexes and condition variables, with which librdkafka hands messages,
// events and its own state between its threads and ours: glibc implements them over pthreads'
// internals, which ThreadSanitizer does not intercept, so without these it sees no order
// between a message filled on a broker thread and its use (or its free) on ours. Through
// pthreads' public calls it does, and checks librdkafka's handoffs instead of guessing them.
static_assert(sizeof(mtx_t) == sizeof(pthread_mutex_t) && alignof(mtx_t) >= alignof(pthread_mutex_t));
static_assert(sizeof(cnd_t) == sizeof(pthread_cond_t) && alignof(cnd_t) >= alignof(pthread_cond_t));
static_assert(sizeof(once_flag) == sizeof(pthread_once_t));

namespace {

pthread_mutex_t* Native(mtx_t* mutex) { return reinterpret_cast<pthread_mutex_t*>(mutex); }
pthread_cond_t* Native(cnd_t* cond) { return reinterpret_cast<pthread_cond_t*>(cond); }

int Result(int err) {
  switch (err) {
    case 0:
      return thrd_success;
    case EBUSY:
      return thrd_busy;
    case ETIMEDOUT:
      return thrd_timedout;
    case ENOMEM:
      return thrd_nomem;
    default:
      return thrd_error;
  }
}

}  // namespace

extern "C" int mtx_init(mtx_t* mutex, int type) {
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  if (type & mtx_recursive) pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
  const int err = pthread_mutex_init(Native(mutex), &attr);
  pthread_mutexattr_destroy(&attr);
  return Result(err);
}

extern "C" int mtx_lock(mtx_t* mutex) { return Result(pthread_mutex_lock(Native(mutex))); }

extern "C" int mtx_trylock(mtx_t* mutex) { return Result(pthread_mutex_trylock(Native(mutex))); }

extern "C" int mtx_timedlock(mtx_t* __restrict mutex, const struct timespec* __restrict until) {
  return Result(pthread_mutex_timedlock(Native(mutex), until));
}

extern "C" int mtx_unlock(mtx_t* mutex) { return Result(pthread_mutex_unlock(Native(mutex))); }

extern "C" void mtx_destroy(mtx_t* mutex) { pthread_mutex_destroy(Native(mutex)); }

extern "C" int cnd_init(cnd_t* cond) { return Result(pthread_cond_init(Native(cond), nullptr)); }

extern "C" int cnd_signal(cnd_t* cond) { return Result(pthread_cond_signal(Native(cond))); }

extern "C" int cnd_broadcast(cnd_t* cond) { return Result(pthread_cond_broadcast(Native(cond))); }

extern "C" int cnd_wait(cnd_t* cond, mtx_t* mutex) { return Result(pthread_cond_wait(Native(cond), Native(mutex))); }

// C11 waits until `until` on TIME_UTC, the clock pthread_cond_timedwait uses by default.
extern "C" int cnd_timedwait(cnd_t* __restrict cond, mtx_t* __restrict mutex, const struct timespec* __restrict until) {
  return Result(pthread_cond_timedwait(Native(cond), Native(mutex), until));
}

extern "C" void cnd_destroy(cnd_t* cond) { pthread_cond_destroy(Native(cond)); }

extern "C" void call_once(once_flag* flag, void (*func)(void)) {
  pthread_once(reinterpret_cast<pthread_once_t*>(flag), func);
}
