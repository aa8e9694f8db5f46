// The tidings Node-API addon: a thin layer over the C ABI (tidings.h) and
// nothing else. JavaScript-facing names and argument checks live in
// index.js; this file only moves strings and numbers across, off the
// JavaScript thread where a call may touch storage or the network.
//
// Threads
//   - Engine and server calls run as Napi::AsyncWorker on the libuv pool
//     and settle a Promise on the JavaScript thread.
//   - Each event subscription has one pump thread of its own looping on
//     tidings_events_next with a timeout and handing each event to a
//     thread-safe function (unref'd: it never keeps the process alive). Pool
//     threads never wait on it.
//   - Log lines arrive on engine threads and are handed over without
//     blocking (dropped when the queue is full).
//
// Lifetimes
//   An engine handle lives in a shared EngineCore; every call in flight and
//   every subscription holds a reference, so tidings_engine_free never races
//   a call (the header's rule). close() waits, on the JavaScript thread,
//   until no call and no subscription is left, then frees the handle on a
//   pool thread. A core dropped without close() (garbage collection, process
//   exit) frees its handle in its destructor.

#include <napi.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

extern "C" {
#include "tidings.h"
}

namespace {

// ---------------------------------------------------------------------------
// Errors

struct AddonData {
  Napi::FunctionReference error_ctor;  // TidingsError from index.js
  Napi::FunctionReference json_parse;
};

std::string TakeString(char* s) {
  std::string out = s != nullptr ? std::string(s) : std::string();
  tidings_string_free(s);
  return out;
}

std::string CodeOf(int status) {
  std::string name = tidings_status_name(status);
  std::string code = "TIDINGS_";
  for (char c : name) {
    code += (c >= 'a' && c <= 'z') ? static_cast<char>(c - 'a' + 'A') : c;
  }
  return code;
}

// An Error (TidingsError once index.js registered it) with `code`
// ("TIDINGS_NOT_FOUND") and `status` (106).
Napi::Value MakeError(Napi::Env env, int status, const std::string& message) {
  std::string text = message.empty() ? std::string(tidings_status_name(status)) : message;
  std::string code = CodeOf(status);
  AddonData* data = env.GetInstanceData<AddonData>();
  Napi::Object err;
  if (data != nullptr && !data->error_ctor.IsEmpty()) {
    err = data->error_ctor.New({Napi::String::New(env, text), Napi::String::New(env, code),
                                Napi::Number::New(env, status)});
  } else {
    err = Napi::Error::New(env, text).Value();
  }
  err.Set("code", Napi::String::New(env, code));
  err.Set("status", Napi::Number::New(env, status));
  return err;
}

[[noreturn]] void ThrowStatus(Napi::Env env, int status, const std::string& message) {
  throw Napi::Error(env, MakeError(env, status, message));
}

void ThrowType(Napi::Env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}

// ---------------------------------------------------------------------------
// Arguments

std::string StrArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsString()) {
    ThrowType(info.Env(), std::string(name) + " must be a string");
  }
  return info[i].As<Napi::String>().Utf8Value();
}

int64_t I64Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() > i && info[i].IsBigInt()) {
    bool lossless = false;
    int64_t v = info[i].As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless) ThrowType(info.Env(), std::string(name) + " is out of range");
    return v;
  }
  if (info.Length() <= i || !info[i].IsNumber()) {
    ThrowType(info.Env(), std::string(name) + " must be an integer");
  }
  return info[i].As<Napi::Number>().Int64Value();
}

uint32_t U32Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    ThrowType(info.Env(), std::string(name) + " must be an integer");
  }
  return info[i].As<Napi::Number>().Uint32Value();
}

uint64_t U64Arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() > i && info[i].IsBigInt()) {
    bool lossless = false;
    uint64_t v = info[i].As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) ThrowType(info.Env(), std::string(name) + " is out of range");
    return v;
  }
  if (info.Length() <= i || !info[i].IsNumber()) {
    ThrowType(info.Env(), std::string(name) + " must be an integer");
  }
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (d < 0) ThrowType(info.Env(), std::string(name) + " must not be negative");
  return static_cast<uint64_t>(d);
}

template <typename T>
T* ExternalArg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsExternal()) {
    ThrowType(info.Env(), std::string(name) + " must be a tidings handle");
  }
  return info[i].As<Napi::External<T>>().Data();
}

// ---------------------------------------------------------------------------
// Engine core and calls

struct EngineCore;
using EnginePtr = std::shared_ptr<EngineCore>;

void QueueEngineFree(Napi::Env env, const EnginePtr& core);

struct EngineCore {
  // Written on the JavaScript thread only; read by pool threads while a
  // call holding this core is in flight (the handle cannot go away then).
  tidings_engine* handle = nullptr;
  int inflight = 0;
  int subscriptions = 0;
  bool closing = false;
  std::vector<Napi::Promise::Deferred> close_waiters;

  ~EngineCore() {
    // Dropped without close(): nothing can call it any more.
    if (handle != nullptr) tidings_engine_free(handle);
  }

  // On the JavaScript thread, after a call or a subscription ended.
  void MaybeFinishClose(Napi::Env env, const EnginePtr& self) {
    if (closing && inflight == 0 && subscriptions == 0 && !close_waiters.empty()) {
      QueueEngineFree(env, self);
    }
  }
};

using EngineRef = EnginePtr*;  // what an External holds

Napi::Value WrapEngine(Napi::Env env, EnginePtr core) {
  return Napi::External<EnginePtr>::New(env, new EnginePtr(std::move(core)),
                                        [](Napi::Env, EnginePtr* p) { delete p; });
}

struct ServerCore;
using ServerPtr = std::shared_ptr<ServerCore>;

struct ServerCore {
  tidings_server* handle = nullptr;
  int inflight = 0;
  bool freed = false;
  ~ServerCore() {
    if (handle != nullptr) tidings_server_free(handle);
  }
};

Napi::Value WrapServer(Napi::Env env, ServerPtr core) {
  return Napi::External<ServerPtr>::New(env, new ServerPtr(std::move(core)),
                                        [](Napi::Env, ServerPtr* p) { delete p; });
}

enum class Result { Json, String, Undefined };

// One blocking C call on a pool thread, settling a Promise.
class CallWorker : public Napi::AsyncWorker {
 public:
  using Fn = std::function<tidings_status(char** out, char** error)>;

  CallWorker(Napi::Env env, EnginePtr engine, ServerPtr server, Fn fn, Result result)
      : Napi::AsyncWorker(env, "tidings"),
        deferred_(Napi::Promise::Deferred::New(env)),
        engine_(std::move(engine)),
        server_(std::move(server)),
        fn_(std::move(fn)),
        result_(result) {
    if (engine_) engine_->inflight++;
    if (server_) server_->inflight++;
  }

  Napi::Promise Promise() { return deferred_.Promise(); }

  void Execute() override {
    char* out = nullptr;
    char* error = nullptr;
    status_ = fn_(&out, &error);
    out_ = TakeString(out);
    error_ = TakeString(error);
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (server_) server_->inflight--;
    // Nothing may throw out of here: a C++ exception that node-addon-api
    // cannot turn into a JavaScript one (the environment is being torn
    // down) would terminate the process.
    try {
      if (engine_) {
        engine_->inflight--;
        engine_->MaybeFinishClose(env, engine_);
      }
      if (status_ != TIDINGS_STATUS_OK) {
        deferred_.Reject(MakeError(env, status_, error_));
        return;
      }
      try {
        deferred_.Resolve(Settle(env));
      } catch (const Napi::Error& e) {
        deferred_.Reject(e.Value());
      }
    } catch (...) {
    }
  }

  void OnError(const Napi::Error& e) override {
    // Execute never calls SetError; kept for completeness.
    if (engine_) engine_->inflight--;
    if (server_) server_->inflight--;
    deferred_.Reject(e.Value());
  }

 protected:
  virtual Napi::Value Settle(Napi::Env env) {
    switch (result_) {
      case Result::Json:
        return env.GetInstanceData<AddonData>()->json_parse.Call(
            {Napi::String::New(env, out_)});
      case Result::String:
        return Napi::String::New(env, out_);
      case Result::Undefined:
        break;
    }
    return env.Undefined();
  }

  Napi::Promise::Deferred deferred_;
  EnginePtr engine_;
  ServerPtr server_;
  Fn fn_;
  Result result_;
  tidings_status status_ = TIDINGS_STATUS_OK;
  std::string out_;
  std::string error_;
};

Napi::Value Rejected(Napi::Env env, int status, const std::string& message) {
  auto d = Napi::Promise::Deferred::New(env);
  d.Reject(MakeError(env, status, message));
  return d.Promise();
}

// Runs `call(handle, out, error)` on the pool for a live engine.
Napi::Value EngineCall(const Napi::CallbackInfo& info,
                       std::function<tidings_status(tidings_engine*, char**, char**)> call,
                       Result result) {
  Napi::Env env = info.Env();
  EnginePtr core = *ExternalArg<EnginePtr>(info, 0, "engine");
  if (core->closing || core->handle == nullptr) {
    return Rejected(env, TIDINGS_STATUS_SHUT_DOWN, "the engine is closed");
  }
  EngineCore* raw = core.get();
  auto* worker = new CallWorker(
      env, core, nullptr,
      [raw, call = std::move(call)](char** out, char** error) {
        return call(raw->handle, out, error);
      },
      result);
  worker->Queue();
  return worker->Promise();
}

class FreeEngineWorker : public Napi::AsyncWorker {
 public:
  FreeEngineWorker(Napi::Env env, tidings_engine* handle,
                   std::vector<Napi::Promise::Deferred> waiters)
      : Napi::AsyncWorker(env, "tidings.close"), handle_(handle), waiters_(std::move(waiters)) {}
  void Execute() override { tidings_engine_free(handle_); }
  void OnOK() override {
    try {
      for (auto& d : waiters_) d.Resolve(Env().Undefined());
    } catch (...) {
    }
  }

 private:
  tidings_engine* handle_;
  std::vector<Napi::Promise::Deferred> waiters_;
};

void QueueEngineFree(Napi::Env env, const EnginePtr& core) {
  std::vector<Napi::Promise::Deferred> waiters = std::move(core->close_waiters);
  core->close_waiters.clear();
  tidings_engine* handle = core->handle;
  core->handle = nullptr;
  if (handle == nullptr) {
    for (auto& d : waiters) d.Resolve(env.Undefined());
    return;
  }
  (new FreeEngineWorker(env, handle, std::move(waiters)))->Queue();
}

class OpenEngineWorker : public CallWorker {
 public:
  OpenEngineWorker(Napi::Env env, std::string config)
      : CallWorker(
            env, nullptr, nullptr,
            [this](char**, char** error) {
              return tidings_engine_new(config_.c_str(), &engine_out_, error);
            },
            Result::Undefined),
        config_(std::move(config)) {}

 protected:
  Napi::Value Settle(Napi::Env env) override {
    auto core = std::make_shared<EngineCore>();
    core->handle = engine_out_;
    engine_out_ = nullptr;
    return WrapEngine(env, core);
  }

 private:
  std::string config_;
  tidings_engine* engine_out_ = nullptr;
};

Napi::Value EngineOpen(const Napi::CallbackInfo& info) {
  auto* worker = new OpenEngineWorker(info.Env(), StrArg(info, 0, "config"));
  worker->Queue();
  return worker->Promise();
}

Napi::Value EngineSend(const Napi::CallbackInfo& info) {
  std::string request = StrArg(info, 1, "request");
  return EngineCall(
      info,
      [request](tidings_engine* e, char** out, char** error) {
        return tidings_engine_send(e, request.c_str(), out, error);
      },
      Result::Json);
}

Napi::Value EngineHistory(const Napi::CallbackInfo& info) {
  std::string conversation = StrArg(info, 1, "conversationId");
  int64_t before = I64Arg(info, 2, "before");
  uint32_t limit = U32Arg(info, 3, "limit");
  return EngineCall(
      info,
      [=](tidings_engine* e, char** out, char** error) {
        return tidings_engine_history(e, conversation.c_str(), before, limit, out, error);
      },
      Result::Json);
}

Napi::Value EngineMessagesAfter(const Napi::CallbackInfo& info) {
  std::string conversation = StrArg(info, 1, "conversationId");
  int64_t after = I64Arg(info, 2, "after");
  uint32_t max = U32Arg(info, 3, "max");
  return EngineCall(
      info,
      [=](tidings_engine* e, char** out, char** error) {
        return tidings_engine_messages_after(e, conversation.c_str(), after, max, out, error);
      },
      Result::Json);
}

Napi::Value EngineMessage(const Napi::CallbackInfo& info) {
  int64_t id = I64Arg(info, 1, "messageId");
  return EngineCall(
      info,
      [=](tidings_engine* e, char** out, char** error) {
        return tidings_engine_message(e, id, out, error);
      },
      Result::Json);
}

Napi::Value EngineMarkRead(const Napi::CallbackInfo& info) {
  std::string user = StrArg(info, 1, "userId");
  std::string conversation = StrArg(info, 2, "conversationId");
  int64_t up_to = I64Arg(info, 3, "upTo");
  return EngineCall(
      info,
      [=](tidings_engine* e, char** out, char** error) {
        return tidings_engine_mark_read(e, user.c_str(), conversation.c_str(), up_to, out,
                                        error);
      },
      Result::Json);
}

Napi::Value EngineUnread(const Napi::CallbackInfo& info) {
  std::string user = StrArg(info, 1, "userId");
  std::string conversation = StrArg(info, 2, "conversationId");
  return EngineCall(
      info,
      [=](tidings_engine* e, char** out, char** error) {
        return tidings_engine_unread(e, user.c_str(), conversation.c_str(), out, error);
      },
      Result::Json);
}

Napi::Value EngineInbox(const Napi::CallbackInfo& info) {
  std::string user = StrArg(info, 1, "userId");
  uint32_t limit = U32Arg(info, 2, "limit");
  return EngineCall(
      info,
      [=](tidings_engine* e, char** out, char** error) {
        return tidings_engine_inbox(e, user.c_str(), limit, out, error);
      },
      Result::Json);
}

Napi::Value EngineSearch(const Napi::CallbackInfo& info) {
  std::string user = StrArg(info, 1, "userId");
  std::string query = StrArg(info, 2, "query");
  uint32_t max = U32Arg(info, 3, "max");
  return EngineCall(
      info,
      [=](tidings_engine* e, char** out, char** error) {
        return tidings_engine_search(e, user.c_str(), query.c_str(), max, out, error);
      },
      Result::Json);
}

Napi::Value EngineTyping(const Napi::CallbackInfo& info) {
  std::string user = StrArg(info, 1, "userId");
  std::string conversation = StrArg(info, 2, "conversationId");
  return EngineCall(
      info,
      [=](tidings_engine* e, char**, char** error) {
        return tidings_engine_typing(e, user.c_str(), conversation.c_str(), error);
      },
      Result::Undefined);
}

Napi::Value EngineEdit(const Napi::CallbackInfo& info) {
  std::string user = StrArg(info, 1, "userId");
  int64_t id = I64Arg(info, 2, "messageId");
  std::string body = StrArg(info, 3, "body");
  return EngineCall(
      info,
      [=](tidings_engine* e, char** out, char** error) {
        return tidings_engine_edit(e, user.c_str(), id, body.c_str(), out, error);
      },
      Result::Json);
}

Napi::Value EngineDelete(const Napi::CallbackInfo& info) {
  std::string user = StrArg(info, 1, "userId");
  int64_t id = I64Arg(info, 2, "messageId");
  return EngineCall(
      info,
      [=](tidings_engine* e, char** out, char** error) {
        return tidings_engine_delete(e, user.c_str(), id, out, error);
      },
      Result::Json);
}

Napi::Value EngineReact(const Napi::CallbackInfo& info) {
  std::string user = StrArg(info, 1, "userId");
  int64_t id = I64Arg(info, 2, "messageId");
  std::string emoji = StrArg(info, 3, "emoji");
  return EngineCall(
      info,
      [=](tidings_engine* e, char** out, char** error) {
        return tidings_engine_react(e, user.c_str(), id, emoji.c_str(), out, error);
      },
      Result::Json);
}

Napi::Value EngineUnreact(const Napi::CallbackInfo& info) {
  std::string user = StrArg(info, 1, "userId");
  int64_t id = I64Arg(info, 2, "messageId");
  return EngineCall(
      info,
      [=](tidings_engine* e, char** out, char** error) {
        return tidings_engine_unreact(e, user.c_str(), id, out, error);
      },
      Result::Json);
}

Napi::Value EngineShutdown(const Napi::CallbackInfo& info) {
  return EngineCall(
      info,
      [](tidings_engine* e, char**, char** error) { return tidings_engine_shutdown(e, error); },
      Result::Undefined);
}

// Refuses new calls at once; resolves once every call in flight and every
// subscription has finished and the handle is freed.
Napi::Value EngineClose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnginePtr core = *ExternalArg<EnginePtr>(info, 0, "engine");
  auto d = Napi::Promise::Deferred::New(env);
  Napi::Promise promise = d.Promise();
  if (core->handle == nullptr && core->closing && core->close_waiters.empty()) {
    d.Resolve(env.Undefined());
    return promise;
  }
  core->closing = true;
  core->close_waiters.push_back(d);
  core->MaybeFinishClose(env, core);
  return promise;
}

Napi::Value EngineIsClosed(const Napi::CallbackInfo& info) {
  EnginePtr core = *ExternalArg<EnginePtr>(info, 0, "engine");
  return Napi::Boolean::New(info.Env(), core->closing);
}

// ---------------------------------------------------------------------------
// Event subscriptions

struct Subscription;
struct EventItem {
  std::string json;
};

void DeliverEvent(Napi::Env env, Napi::Function callback, Subscription* sub, EventItem* item);
using EventTsfn = Napi::TypedThreadSafeFunction<Subscription, EventItem, DeliverEvent>;
using SubPtr = std::shared_ptr<Subscription>;

struct Subscription {
  EnginePtr engine;                // released once the stream is freed
  tidings_events* events = nullptr;  // freed by the thread-safe function's finalizer
  EventTsfn tsfn;
  std::thread pump;
  std::atomic<bool> stop{false};
  bool finished = false;  // JavaScript thread: the finalizer ran
  Napi::FunctionReference on_end;
  // Written by the pump before it releases the thread-safe function, read
  // by the finalizer after joining it.
  int end_status = TIDINGS_STATUS_CLOSED;
  std::string end_message;
};

// Delivers one event JSON string to the JavaScript callback.
void DeliverEvent(Napi::Env env, Napi::Function callback, Subscription*, EventItem* item) {
  std::unique_ptr<EventItem> owned(item);
  if (env == nullptr || callback.IsEmpty()) return;  // tearing down: drop it
  try {
    // index.js never lets a listener's exception reach here (it rethrows it
    // on the next tick); what fails here is the environment going away.
    callback.Call({Napi::String::New(env, owned->json)});
  } catch (...) {
  }
}

// The pump: one per subscription, never a libuv pool thread.
void Pump(Subscription* sub) {
  bool tsfn_gone = false;
  while (!sub->stop.load(std::memory_order_acquire)) {
    char* json = nullptr;
    char* error = nullptr;
    tidings_status status = tidings_events_next(sub->events, 500, &json, &error);
    if (status == TIDINGS_STATUS_TIMEOUT) continue;
    if (status == TIDINGS_STATUS_OK) {
      auto* item = new EventItem{TakeString(json)};
      napi_status call = sub->tsfn.BlockingCall(item);
      if (call != napi_ok) {
        delete item;
        // napi_closing: the environment is going away and has already
        // counted this thread out; the function must not be touched again.
        tsfn_gone = call == napi_closing;
        break;
      }
      continue;
    }
    if (status != TIDINGS_STATUS_CLOSED) {
      sub->end_status = status;
      sub->end_message = TakeString(error);
    } else {
      tidings_string_free(error);
    }
    break;
  }
  if (!tsfn_gone) sub->tsfn.Release();
}

// Runs on the JavaScript thread once the pump released the function (or the
// environment is torn down): joins the pump, frees the stream, reports the end.
void FinishSubscription(Napi::Env env, SubPtr* hold, Subscription* sub) {
  std::unique_ptr<SubPtr> owned(hold);
  sub->stop.store(true, std::memory_order_release);
  if (sub->events != nullptr) tidings_events_close(sub->events);
  if (sub->pump.joinable()) sub->pump.join();
  tidings_events_free(sub->events);
  sub->events = nullptr;
  sub->finished = true;
  EnginePtr engine = std::move(sub->engine);
  sub->engine = nullptr;
  Napi::FunctionReference on_end = std::move(sub->on_end);
  try {
    if (engine) {
      engine->subscriptions--;
      engine->MaybeFinishClose(env, engine);
    }
    if (!on_end.IsEmpty()) {
      if (sub->end_status == TIDINGS_STATUS_CLOSED) {
        on_end.Call({env.Null()});
      } else {
        on_end.Call({MakeError(env, sub->end_status, sub->end_message)});
      }
    }
  } catch (...) {
    // The environment is shutting down: nobody is left to tell.
  }
}

Napi::Value EngineSubscribe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  EnginePtr core = *ExternalArg<EnginePtr>(info, 0, "engine");
  if (info.Length() < 3 || !info[1].IsFunction() || !info[2].IsFunction()) {
    ThrowType(env, "subscribe(engine, onEvent, onEnd) takes two functions");
  }
  if (core->closing || core->handle == nullptr) {
    ThrowStatus(env, TIDINGS_STATUS_SHUT_DOWN, "the engine is closed");
  }
  tidings_events* events = nullptr;
  char* error = nullptr;
  // Subscribing touches neither storage nor the network: no worker needed.
  tidings_status status = tidings_events_new(core->handle, &events, &error);
  std::string message = TakeString(error);
  if (status != TIDINGS_STATUS_OK) ThrowStatus(env, status, message);

  auto sub = std::make_shared<Subscription>();
  sub->engine = core;
  sub->events = events;
  sub->on_end = Napi::Persistent(info[2].As<Napi::Function>());
  auto* hold = new SubPtr(sub);
  sub->tsfn = EventTsfn::New(env, info[1].As<Napi::Function>(), "tidings.events", 256, 1,
                             sub.get(), FinishSubscription, hold);
  sub->tsfn.Unref(env);
  core->subscriptions++;
  sub->pump = std::thread(Pump, sub.get());
  return Napi::External<SubPtr>::New(env, new SubPtr(sub),
                                     [](Napi::Env, SubPtr* p) { delete p; });
}

// Asks the pump to stop; the end callback follows once it has.
Napi::Value SubscriptionClose(const Napi::CallbackInfo& info) {
  SubPtr sub = *ExternalArg<SubPtr>(info, 0, "subscription");
  sub->stop.store(true, std::memory_order_release);
  if (!sub->finished && sub->events != nullptr) tidings_events_close(sub->events);
  return info.Env().Undefined();
}

Napi::Value SubscriptionRef(const Napi::CallbackInfo& info) {
  SubPtr sub = *ExternalArg<SubPtr>(info, 0, "subscription");
  bool ref = info.Length() > 1 && info[1].ToBoolean().Value();
  if (!sub->finished) {
    if (ref) {
      sub->tsfn.Ref(info.Env());
    } else {
      sub->tsfn.Unref(info.Env());
    }
  }
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------
// Server

class StartServerWorker : public CallWorker {
 public:
  StartServerWorker(Napi::Env env, std::string config)
      : CallWorker(
            env, nullptr, nullptr,
            [this](char** out, char** error) {
              return tidings_server_start(config_.c_str(), &server_out_, out, error);
            },
            Result::Undefined),
        config_(std::move(config)) {}

 protected:
  Napi::Value Settle(Napi::Env env) override {
    auto core = std::make_shared<ServerCore>();
    core->handle = server_out_;
    server_out_ = nullptr;
    Napi::Object result = Napi::Object::New(env);
    result.Set("server", WrapServer(env, core));
    result.Set("address", Napi::String::New(env, out_));
    return result;
  }

 private:
  std::string config_;
  tidings_server* server_out_ = nullptr;
};

Napi::Value ServerStart(const Napi::CallbackInfo& info) {
  auto* worker = new StartServerWorker(info.Env(), StrArg(info, 0, "config"));
  worker->Queue();
  return worker->Promise();
}

ServerPtr LiveServer(const Napi::CallbackInfo& info) {
  ServerPtr core = *ExternalArg<ServerPtr>(info, 0, "server");
  if (core->freed || core->handle == nullptr) {
    ThrowStatus(info.Env(), TIDINGS_STATUS_SHUT_DOWN, "the server is closed");
  }
  return core;
}

Napi::Value ServerInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ServerPtr core = LiveServer(info);
  char* out = nullptr;
  char* error = nullptr;
  tidings_status status = tidings_server_info(core->handle, &out, &error);
  std::string message = TakeString(error);
  if (status != TIDINGS_STATUS_OK) ThrowStatus(env, status, message);
  return env.GetInstanceData<AddonData>()->json_parse.Call(
      {Napi::String::New(env, TakeString(out))});
}

Napi::Value ServerEngine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ServerPtr core = LiveServer(info);
  tidings_engine* engine = nullptr;
  char* error = nullptr;
  tidings_status status = tidings_server_engine(core->handle, &engine, &error);
  std::string message = TakeString(error);
  if (status != TIDINGS_STATUS_OK) ThrowStatus(env, status, message);
  auto engine_core = std::make_shared<EngineCore>();
  engine_core->handle = engine;
  return WrapEngine(env, engine_core);
}

Napi::Value ServerStop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ServerPtr core = *ExternalArg<ServerPtr>(info, 0, "server");
  if (core->freed || core->handle == nullptr) {
    auto d = Napi::Promise::Deferred::New(env);
    d.Resolve(env.Undefined());
    return d.Promise();
  }
  ServerCore* raw = core.get();
  auto* worker = new CallWorker(
      env, nullptr, core,
      [raw](char**, char** error) { return tidings_server_stop(raw->handle, error); },
      Result::Undefined);
  worker->Queue();
  return worker->Promise();
}

class FreeServerWorker : public Napi::AsyncWorker {
 public:
  FreeServerWorker(Napi::Env env, tidings_server* handle)
      : Napi::AsyncWorker(env, "tidings.server.close"),
        deferred_(Napi::Promise::Deferred::New(env)),
        handle_(handle) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { tidings_server_free(handle_); }
  void OnOK() override {
    try {
      deferred_.Resolve(Env().Undefined());
    } catch (...) {
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  tidings_server* handle_;
};

// Stops (if still running) and frees the server. index.js waits for its
// own calls first; a call still in flight here is refused.
Napi::Value ServerClose(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ServerPtr core = *ExternalArg<ServerPtr>(info, 0, "server");
  if (core->freed || core->handle == nullptr) {
    auto d = Napi::Promise::Deferred::New(env);
    d.Resolve(env.Undefined());
    return d.Promise();
  }
  if (core->inflight > 0) {
    return Rejected(env, TIDINGS_STATUS_CONFLICT, "a server call is still in flight");
  }
  core->freed = true;
  tidings_server* handle = core->handle;
  core->handle = nullptr;
  auto* worker = new FreeServerWorker(env, handle);
  worker->Queue();
  return worker->Promise();
}

// ---------------------------------------------------------------------------
// Auth helpers (pure functions: computed on the calling thread)

Napi::Value StringResult(Napi::Env env, tidings_status status, char* out, char* error) {
  std::string message = TakeString(error);
  if (status != TIDINGS_STATUS_OK) ThrowStatus(env, status, message);
  return Napi::String::New(env, TakeString(out));
}

Napi::Value ChannelAuth(const Napi::CallbackInfo& info) {
  std::string key = StrArg(info, 0, "appKey"), secret = StrArg(info, 1, "appSecret"),
              socket = StrArg(info, 2, "socketId"), channel = StrArg(info, 3, "channel");
  char* out = nullptr;
  char* error = nullptr;
  tidings_status s =
      tidings_channel_auth(key.c_str(), secret.c_str(), socket.c_str(), channel.c_str(), &out,
                           &error);
  return StringResult(info.Env(), s, out, error);
}

Napi::Value PresenceAuth(const Napi::CallbackInfo& info) {
  std::string key = StrArg(info, 0, "appKey"), secret = StrArg(info, 1, "appSecret"),
              socket = StrArg(info, 2, "socketId"), channel = StrArg(info, 3, "channel"),
              data = StrArg(info, 4, "channelData");
  char* out = nullptr;
  char* error = nullptr;
  tidings_status s = tidings_presence_auth(key.c_str(), secret.c_str(), socket.c_str(),
                                           channel.c_str(), data.c_str(), &out, &error);
  return StringResult(info.Env(), s, out, error);
}

Napi::Value UserAuth(const Napi::CallbackInfo& info) {
  std::string key = StrArg(info, 0, "appKey"), secret = StrArg(info, 1, "appSecret"),
              socket = StrArg(info, 2, "socketId"), data = StrArg(info, 3, "userData");
  char* out = nullptr;
  char* error = nullptr;
  tidings_status s =
      tidings_user_auth(key.c_str(), secret.c_str(), socket.c_str(), data.c_str(), &out, &error);
  return StringResult(info.Env(), s, out, error);
}

Napi::Value ConversationId(const Napi::CallbackInfo& info) {
  std::string a = StrArg(info, 0, "userA"), b = StrArg(info, 1, "userB");
  char* out = nullptr;
  char* error = nullptr;
  tidings_status s = tidings_conversation_id(a.c_str(), b.c_str(), &out, &error);
  return StringResult(info.Env(), s, out, error);
}

Napi::Value ConversationOfChannel(const Napi::CallbackInfo& info) {
  std::string channel = StrArg(info, 0, "channel");
  char* out = nullptr;
  char* error = nullptr;
  tidings_status s = tidings_conversation_of_channel(channel.c_str(), &out, &error);
  return StringResult(info.Env(), s, out, error);
}

Napi::Value TokenMint(const Napi::CallbackInfo& info) {
  std::string secret = StrArg(info, 0, "appSecret"), user = StrArg(info, 1, "userId");
  uint64_t ttl = U64Arg(info, 2, "ttlSeconds");
  char* out = nullptr;
  char* error = nullptr;
  tidings_status s = tidings_token_mint(secret.c_str(), user.c_str(), ttl, &out, &error);
  return StringResult(info.Env(), s, out, error);
}

Napi::Value TokenVerify(const Napi::CallbackInfo& info) {
  std::string secret = StrArg(info, 0, "appSecret"), token = StrArg(info, 1, "token");
  char* out = nullptr;
  char* error = nullptr;
  tidings_status s = tidings_token_verify(secret.c_str(), token.c_str(), &out, &error);
  return StringResult(info.Env(), s, out, error);
}

// ---------------------------------------------------------------------------
// Log sink

struct LogLine {
  int level;
  std::string target;
  std::string message;
};
struct LogSink;
void DeliverLog(Napi::Env env, Napi::Function callback, LogSink*, LogLine* line);
using LogTsfn = Napi::TypedThreadSafeFunction<LogSink, LogLine, DeliverLog>;
struct LogSink {
  LogTsfn tsfn;
  bool released = false;
};

// Sinks whose thread-safe function is still alive; guards every use of one
// from engine threads against its finalizer.
std::mutex g_log_mutex;
std::set<LogSink*> g_log_sinks;

void DeliverLog(Napi::Env env, Napi::Function callback, LogSink*, LogLine* line) {
  std::unique_ptr<LogLine> owned(line);
  if (env == nullptr || callback.IsEmpty()) return;
  try {
    callback.Call({Napi::Number::New(env, owned->level), Napi::String::New(env, owned->target),
                   Napi::String::New(env, owned->message)});
  } catch (...) {
    // As for events: index.js rethrows a sink's exception itself.
  }
}

// Engine threads: never blocks; a full queue drops the line.
void OnLog(void* userdata, tidings_log_level level, const char* target, const char* message) {
  auto* sink = static_cast<LogSink*>(userdata);
  std::lock_guard<std::mutex> lock(g_log_mutex);
  if (g_log_sinks.count(sink) == 0 || sink->released) return;
  auto* line = new LogLine{static_cast<int>(level), target != nullptr ? target : "",
                           message != nullptr ? message : ""};
  if (sink->tsfn.NonBlockingCall(line) != napi_ok) delete line;
}

// tidings no longer calls this sink.
void FreeLogSink(void* userdata) {
  auto* sink = static_cast<LogSink*>(userdata);
  std::lock_guard<std::mutex> lock(g_log_mutex);
  if (g_log_sinks.count(sink) == 0 || sink->released) return;
  sink->released = true;
  sink->tsfn.Release();
}

void FinishLogSink(Napi::Env, void*, LogSink* sink) {
  std::lock_guard<std::mutex> lock(g_log_mutex);
  g_log_sinks.erase(sink);
  delete sink;
}

Napi::Value SetLogger(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int level = info.Length() > 1 && info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value()
                                                       : TIDINGS_LOG_LEVEL_INFO;
  char* error = nullptr;
  tidings_status status;
  if (info.Length() == 0 || !info[0].IsFunction() || level == TIDINGS_LOG_LEVEL_OFF) {
    status = tidings_log_set_callback(nullptr, TIDINGS_LOG_LEVEL_OFF, nullptr, nullptr, &error);
  } else {
    auto* sink = new LogSink();
    sink->tsfn = LogTsfn::New(env, info[0].As<Napi::Function>(), "tidings.log", 1024, 1, sink,
                              FinishLogSink, static_cast<void*>(nullptr));
    sink->tsfn.Unref(env);
    {
      std::lock_guard<std::mutex> lock(g_log_mutex);
      g_log_sinks.insert(sink);
    }
    status = tidings_log_set_callback(OnLog, level, sink, FreeLogSink, &error);
    if (status != TIDINGS_STATUS_OK) FreeLogSink(sink);
  }
  std::string message = TakeString(error);
  if (status != TIDINGS_STATUS_OK) ThrowStatus(env, status, message);
  return env.Undefined();
}

// ---------------------------------------------------------------------------
// Module

Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) ThrowType(env, "init(TidingsError)");
  env.GetInstanceData<AddonData>()->error_ctor = Napi::Persistent(info[0].As<Napi::Function>());
  return env.Undefined();
}

Napi::Value StatusName(const Napi::CallbackInfo& info) {
  int status = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value()
                                                        : TIDINGS_STATUS_UNKNOWN;
  return Napi::String::New(info.Env(), tidings_status_name(status));
}

Napi::Object Module(Napi::Env env, Napi::Object exports) {
  uint32_t abi = tidings_abi_version();
  if ((abi >> 16) != TIDINGS_ABI_VERSION_MAJOR) {
    Napi::Error err = Napi::Error::New(
        env, "tidings: the loaded library has C ABI " + std::to_string(abi >> 16) + "." +
                 std::to_string(abi & 0xffff) + ", this addon was built for major " +
                 std::to_string(TIDINGS_ABI_VERSION_MAJOR));
    err.Set("code", Napi::String::New(env, "TIDINGS_ABI_MISMATCH"));
    throw err;
  }
  auto* data = new AddonData();
  data->json_parse = Napi::Persistent(
      env.Global().Get("JSON").As<Napi::Object>().Get("parse").As<Napi::Function>());
  env.SetInstanceData<AddonData>(data);

  struct Entry {
    const char* name;
    Napi::Value (*fn)(const Napi::CallbackInfo&);
  };
  const Entry entries[] = {
      {"init", Init},
      {"statusName", StatusName},
      {"engineOpen", EngineOpen},
      {"engineSend", EngineSend},
      {"engineHistory", EngineHistory},
      {"engineMessagesAfter", EngineMessagesAfter},
      {"engineMessage", EngineMessage},
      {"engineMarkRead", EngineMarkRead},
      {"engineUnread", EngineUnread},
      {"engineInbox", EngineInbox},
      {"engineSearch", EngineSearch},
      {"engineTyping", EngineTyping},
      {"engineEdit", EngineEdit},
      {"engineDelete", EngineDelete},
      {"engineReact", EngineReact},
      {"engineUnreact", EngineUnreact},
      {"engineShutdown", EngineShutdown},
      {"engineClose", EngineClose},
      {"engineIsClosed", EngineIsClosed},
      {"engineSubscribe", EngineSubscribe},
      {"subscriptionClose", SubscriptionClose},
      {"subscriptionRef", SubscriptionRef},
      {"serverStart", ServerStart},
      {"serverInfo", ServerInfo},
      {"serverEngine", ServerEngine},
      {"serverStop", ServerStop},
      {"serverClose", ServerClose},
      {"channelAuth", ChannelAuth},
      {"presenceAuth", PresenceAuth},
      {"userAuth", UserAuth},
      {"conversationId", ConversationId},
      {"conversationOfChannel", ConversationOfChannel},
      {"tokenMint", TokenMint},
      {"tokenVerify", TokenVerify},
      {"setLogger", SetLogger},
  };
  for (const Entry& e : entries) {
    exports.Set(e.name, Napi::Function::New(env, e.fn, e.name));
  }
  exports.Set("abiVersion", Napi::Number::New(env, abi));
  exports.Set("abiVersionMajor", Napi::Number::New(env, TIDINGS_ABI_VERSION_MAJOR));
  exports.Set("abiVersionMinor", Napi::Number::New(env, TIDINGS_ABI_VERSION_MINOR));
  exports.Set("version", Napi::String::New(env, tidings_version()));
  return exports;
}

}  // namespace

NODE_API_MODULE(tidings, Module)
