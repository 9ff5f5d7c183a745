// Linked into executables only under ThreadSanitizer (see CMakeLists.txt): starts, joins and
// detaches C11 threads through pthreads, which ThreadSanitizer intercepts (glibc's C11 calls
// go to pthreads' internals, which it does not), so that the threads librdkafka starts with
// thrd_create carry its state, and their ends are seen.
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
