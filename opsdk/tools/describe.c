/* describe.c — prints, as JSON, what an op pack registers when it is initialised.
 *
 * Usage: vt_describe path/to/libvt_<name>.so
 *
 * It dlopens the library, checks the exported ABI version, and calls vt_oppack_init against a
 * *recording* host table: define_op, register_kernel and register_backward are recorded; every
 * function that would compute (call, empty, as_strided, ...) fails or returns NULL, because a pack
 * must not compute during init. vt_add_oppack() runs this after every link and turns the output
 * into manifest.json, so the pack's own registrations are the one source of truth for its
 * manifest.
 *
 * What it is not: a loader. Nothing here is used at run time; the registry does the real loading.
 *
 * Output (one JSON object on stdout, one key per line; the first line is exactly "{"):
 *   {"abi": [major, minor], "ops": ["ns::op", ...], "schemas": {"ns::op": "<schema>", ...},
 *    "kernels": [{"op": ..., "device": "cpu", "provider": ..., "priority": 0}, ...],
 *    "backward": ["ns::op", ...], "devices": ["cpu", ...], "requires": ["other::op", ...]}
 * "requires" lists ops the pack looked up (find_op) or provided kernels for without defining them.
 * A pack that declares its capabilities (VT_OPPACK_CAPABILITIES, vt/capabilities.h) adds a last key,
 * "capabilities": the JSON text it declared, copied as written (vt_write_manifest.cmake checks it
 * parses; the registry checks what it says).
 *
 * Exit status: 0 ok; 2 the library cannot be loaded or is not a compatible op pack; 3 init failed.
 * C99; depends only on vt/oppack.h and libdl. */
#define _POSIX_C_SOURCE 200809L
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vt/capabilities.h"
#include "vt/oppack.h"

/* ---- a tiny growable list of strings --------------------------------------------------------- */
typedef struct strlist {
  char** items;
  size_t len, cap;
} strlist;

static char* dup_str(const char* s, size_t n) {
  char* r = (char*)malloc(n + 1);
  if (!r) {
    fprintf(stderr, "vt_describe: out of memory\n");
    exit(4);
  }
  memcpy(r, s, n);
  r[n] = '\0';
  return r;
}

static void push(strlist* l, const char* s) {
  if (l->len == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 16;
    l->items = (char**)realloc(l->items, l->cap * sizeof(char*));
    if (!l->items) {
      fprintf(stderr, "vt_describe: out of memory\n");
      exit(4);
    }
  }
  l->items[l->len++] = dup_str(s, strlen(s));
}

static int contains(const strlist* l, const char* s) {
  size_t i;
  for (i = 0; i < l->len; ++i)
    if (strcmp(l->items[i], s) == 0) return 1;
  return 0;
}

/* ---- what init registered ------------------------------------------------------------------ */
typedef struct kernel_rec {
  char* op;
  int32_t device;
  char* provider;
  int32_t priority;
} kernel_rec;

static strlist g_ops, g_schemas, g_backward, g_requires;
static kernel_rec* g_kernels;
static size_t g_nkernels, g_capkernels;
static int g_in_init;
static char g_error[4096];
static vt_status g_error_status;

static vt_status rec_set_error(vt_status status, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_error, sizeof g_error, fmt, ap);
  va_end(ap);
  g_error_status = status;
  return status;
}

static const char* device_name(int32_t type) {
  switch (type) {
    case VT_CPU: return "cpu";
    case VT_CUDA: return "cuda";
    default: return NULL;
  }
}

/* "  ns::name ( ... ) -> T" -> "ns::name"; NULL when the schema has no "ns::name(" head. */
static char* op_name_of(const char* schema) {
  const char* b = schema;
  const char* paren = strchr(schema, '(');
  const char* e;
  if (!paren) return NULL;
  while (*b == ' ' || *b == '\t' || *b == '\n') ++b;
  e = paren;
  while (e > b && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n')) --e;
  if (e == b) return NULL;
  return dup_str(b, (size_t)(e - b));
}

static vt_status rec_define_op(vt_pack* pack, const char* schema) {
  char* name;
  const char* sep;
  (void)pack;
  if (!g_in_init) return rec_set_error(VT_ERR_RUNTIME, "define_op called outside vt_oppack_init");
  if (!schema) return rec_set_error(VT_ERR_VALUE, "define_op: schema is NULL");
  name = op_name_of(schema);
  if (!name) return rec_set_error(VT_ERR_VALUE, "define_op: cannot find 'ns::name(' in schema '%s'", schema);
  sep = strstr(name, "::");
  if (!sep || sep == name || sep[2] == '\0' || strstr(sep + 2, "::")) {
    rec_set_error(VT_ERR_VALUE, "define_op: op name '%s' must look like 'namespace::name'", name);
    free(name);
    return VT_ERR_VALUE;
  }
  if (!strchr(schema, ')') || !strstr(schema, "->")) {
    rec_set_error(VT_ERR_VALUE, "define_op: schema '%s' needs '(...) -> <returns>'", schema);
    free(name);
    return VT_ERR_VALUE;
  }
  if (contains(&g_ops, name)) {
    rec_set_error(VT_ERR_VALUE, "define_op: op '%s' is defined twice", name);
    free(name);
    return VT_ERR_VALUE;
  }
  push(&g_ops, name);
  push(&g_schemas, schema);
  free(name);
  return VT_OK;
}

static vt_status rec_register_kernel(vt_pack* pack, const char* op_name, int32_t device_type,
                                     const char* provider, int32_t priority, vt_kernel_fn fn,
                                     void* user) {
  kernel_rec* k;
  (void)pack;
  (void)user;
  if (!g_in_init) return rec_set_error(VT_ERR_RUNTIME, "register_kernel called outside vt_oppack_init");
  if (!op_name || !provider || !fn)
    return rec_set_error(VT_ERR_VALUE, "register_kernel: op name, provider and fn must be non-NULL");
  if (!device_name(device_type))
    return rec_set_error(VT_ERR_VALUE, "register_kernel(%s): unknown device type %d", op_name, (int)device_type);
  if (provider[0] == '\0') return rec_set_error(VT_ERR_VALUE, "register_kernel(%s): empty provider name", op_name);
  if (g_nkernels == g_capkernels) {
    g_capkernels = g_capkernels ? 2 * g_capkernels : 16;
    g_kernels = (kernel_rec*)realloc(g_kernels, g_capkernels * sizeof(kernel_rec));
    if (!g_kernels) {
      fprintf(stderr, "vt_describe: out of memory\n");
      exit(4);
    }
  }
  k = &g_kernels[g_nkernels++];
  k->op = dup_str(op_name, strlen(op_name));
  k->device = device_type;
  k->provider = dup_str(provider, strlen(provider));
  k->priority = priority;
  return VT_OK;
}

static vt_status rec_register_backward(vt_pack* pack, const char* op_name, vt_backward_fn fn,
                                       uint64_t save_args, uint64_t save_outs) {
  (void)pack;
  (void)save_args;
  (void)save_outs;
  if (!g_in_init) return rec_set_error(VT_ERR_RUNTIME, "register_backward called outside vt_oppack_init");
  if (!op_name || !fn) return rec_set_error(VT_ERR_VALUE, "register_backward: op name and fn must be non-NULL");
  if (!contains(&g_ops, op_name))
    return rec_set_error(VT_ERR_VALUE, "register_backward: op '%s' is not defined by this pack", op_name);
  if (contains(&g_backward, op_name))
    return rec_set_error(VT_ERR_VALUE, "register_backward: op '%s' already has a backward rule", op_name);
  push(&g_backward, op_name);
  return VT_OK;
}

/* ABI 1.1: a meta step belongs to an op this pack defines; a compute is recorded like a kernel */
static vt_status rec_register_meta(vt_pack* pack, const char* op_name, vt_kernel_fn fn, uint32_t flags) {
  (void)pack;
  (void)flags;
  if (!g_in_init) return rec_set_error(VT_ERR_RUNTIME, "register_meta called outside vt_oppack_init");
  if (!op_name || !fn) return rec_set_error(VT_ERR_VALUE, "register_meta: op name and fn must be non-NULL");
  if (!contains(&g_ops, op_name))
    return rec_set_error(VT_ERR_VALUE, "register_meta: op '%s' is not defined by this pack", op_name);
  return VT_OK;
}
static vt_status rec_register_compute(vt_pack* pack, const char* op_name, int32_t device_type,
                                      const char* provider, int32_t priority, vt_kernel_fn fn, void* user) {
  return rec_register_kernel(pack, op_name, device_type, provider, priority, fn, user);
}

/* find_op hands out a dummy handle so packs that resolve op handles during init still describe;
 * calling through it fails. */
static char g_dummy_op;
static vt_op* rec_find_op(const char* name) {
  if (!name) {
    rec_set_error(VT_ERR_VALUE, "find_op: name is NULL");
    return NULL;
  }
  if (!contains(&g_ops, name) && !contains(&g_requires, name)) push(&g_requires, name);
  return (vt_op*)(void*)&g_dummy_op;
}

static vt_status rec_call(vt_op* op, const vt_value* args, int32_t nargs, vt_value* outs, int32_t nouts) {
  (void)op;
  (void)args;
  (void)nargs;
  (void)outs;
  (void)nouts;
  return rec_set_error(VT_ERR_RUNTIME, "ops cannot be called during vt_oppack_init");
}

static vt_tensor* rec_empty(const int64_t* sizes, int32_t ndim, vt_dtype dtype, vt_device device) {
  (void)sizes;
  (void)ndim;
  (void)dtype;
  (void)device;
  rec_set_error(VT_ERR_RUNTIME, "tensors cannot be allocated during vt_oppack_init");
  return NULL;
}

static vt_tensor* rec_as_strided(vt_tensor* base, const int64_t* sizes, const int64_t* strides,
                                 int32_t ndim, int64_t offset) {
  (void)base;
  (void)sizes;
  (void)strides;
  (void)ndim;
  (void)offset;
  rec_set_error(VT_ERR_RUNTIME, "tensors cannot be made during vt_oppack_init");
  return NULL;
}

static void rec_retain(vt_tensor* t) { (void)t; }
static void rec_release(vt_tensor* t) { (void)t; }

static void rec_parallel_for(int64_t begin, int64_t end, int64_t grain, vt_range_fn fn, void* closure) {
  (void)grain;
  if (begin < end) fn(closure, begin, end); /* inline: harmless, and no threads in a build tool */
}

static int32_t rec_num_threads(void) { return 1; }

static void rec_philox_reserve(vt_device device, uint64_t count, uint64_t* seed, uint64_t* offset) {
  (void)device;
  (void)count;
  if (seed) *seed = 0;
  if (offset) *offset = 0;
}

static void* rec_current_stream(vt_device device) {
  (void)device;
  return NULL;
}

/* ---- JSON output ------------------------------------------------------------------------------ */
static void json_str(const char* s) {
  const unsigned char* p = (const unsigned char*)s;
  putchar('"');
  for (; *p; ++p) {
    switch (*p) {
      case '"': fputs("\\\"", stdout); break;
      case '\\': fputs("\\\\", stdout); break;
      case '\n': fputs("\\n", stdout); break;
      case '\r': fputs("\\r", stdout); break;
      case '\t': fputs("\\t", stdout); break;
      case '\b': fputs("\\b", stdout); break;
      case '\f': fputs("\\f", stdout); break;
      default:
        if (*p < 0x20)
          printf("\\u%04x", (unsigned)*p);
        else
          putchar(*p); /* UTF-8 passes through unchanged */
    }
  }
  putchar('"');
}

static void json_list(const strlist* l) {
  size_t i;
  putchar('[');
  for (i = 0; i < l->len; ++i) {
    if (i) fputs(", ", stdout);
    json_str(l->items[i]);
  }
  putchar(']');
}

int main(int argc, char** argv) {
  void* lib;
  vt_oppack_abi_fn abi_fn;
  vt_oppack_init_fn init_fn;
  uint32_t abi;
  unsigned major, minor;
  vt_host host;
  vt_status st;
  strlist devices = {0};
  size_t i;

  if (argc != 2 || argv[1][0] == '-') {
    fprintf(stderr, "usage: vt_describe path/to/libvt_<name>.so\n");
    return 2;
  }
  lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "vt_describe: cannot load %s: %s\n", argv[1], dlerror());
    return 2;
  }
  /* function <-> object pointer conversion through memcpy keeps -Wpedantic quiet */
  {
    void* sym = dlsym(lib, VT_OPPACK_ABI_SYMBOL);
    if (!sym) {
      fprintf(stderr,
              "vt_describe: %s is not an op pack: it does not export '%s' "
              "(define it with VT_OPPACK_DEFINE(your_init) from vt/oppack.h)\n",
              argv[1], VT_OPPACK_ABI_SYMBOL);
      return 2;
    }
    memcpy(&abi_fn, &sym, sizeof abi_fn);
  }
  abi = abi_fn();
  major = abi >> 16;
  minor = abi & 0xffffu;
  if (major != VT_ABI_MAJOR) {
    fprintf(stderr, "vt_describe: %s was built for op-pack ABI %u.%u but this SDK speaks %d.%d (majors must match)\n",
            argv[1], major, minor, VT_ABI_MAJOR, VT_ABI_MINOR);
    return 2;
  }
  if (minor > VT_ABI_MINOR)
    fprintf(stderr, "vt_describe: warning: %s was built for ABI %u.%u, newer than this SDK's %d.%d\n", argv[1],
            major, minor, VT_ABI_MAJOR, VT_ABI_MINOR);
  {
    void* sym = dlsym(lib, VT_OPPACK_INIT_SYMBOL);
    if (!sym) {
      fprintf(stderr, "vt_describe: %s does not export '%s' (use VT_OPPACK_DEFINE(your_init))\n", argv[1],
              VT_OPPACK_INIT_SYMBOL);
      return 2;
    }
    memcpy(&init_fn, &sym, sizeof init_fn);
  }

  memset(&host, 0, sizeof host);
  host.size = (uint32_t)sizeof(vt_host);
  host.abi_major = VT_ABI_MAJOR;
  host.abi_minor = VT_ABI_MINOR;
  host.set_error = rec_set_error;
  host.define_op = rec_define_op;
  host.register_kernel = rec_register_kernel;
  host.register_backward = rec_register_backward;
  host.find_op = rec_find_op;
  host.call = rec_call;
  host.empty = rec_empty;
  host.as_strided = rec_as_strided;
  host.retain = rec_retain;
  host.release = rec_release;
  host.parallel_for = rec_parallel_for;
  host.num_threads = rec_num_threads;
  host.philox_reserve = rec_philox_reserve;
  host.current_stream = rec_current_stream;
  host.register_meta = rec_register_meta;
  host.register_compute = rec_register_compute;

  g_in_init = 1;
  st = init_fn(&host, (vt_pack*)(void*)&host); /* the pack handle is opaque; any non-NULL will do */
  g_in_init = 0;
  if (st != VT_OK) {
    fprintf(stderr, "vt_describe: vt_oppack_init of %s failed (status %d): %s\n", argv[1], (int)st,
            g_error[0] ? g_error : "(no message set)");
    return 3;
  }

  for (i = 0; i < g_nkernels; ++i) {
    const char* d = device_name(g_kernels[i].device);
    if (!contains(&devices, d)) push(&devices, d);
    if (!contains(&g_ops, g_kernels[i].op) && !contains(&g_requires, g_kernels[i].op)) push(&g_requires, g_kernels[i].op);
  }
  /* devices in a fixed order: cpu first */
  if (devices.len == 2 && strcmp(devices.items[0], "cuda") == 0) {
    char* t = devices.items[0];
    devices.items[0] = devices.items[1];
    devices.items[1] = t;
  }

  /* one key per line, one kernel per line: readable, and vt_write_manifest.cmake adds its keys
   * after the opening line */
  printf("{\n  \"abi\": [%u, %u],\n  \"ops\": ", major, minor);
  json_list(&g_ops);
  fputs(",\n  \"schemas\": {", stdout);
  for (i = 0; i < g_ops.len; ++i) {
    fputs(i ? ",\n    " : "\n    ", stdout);
    json_str(g_ops.items[i]);
    fputs(": ", stdout);
    json_str(g_schemas.items[i]);
  }
  fputs(g_ops.len ? "\n  },\n  \"kernels\": [" : "},\n  \"kernels\": [", stdout);
  for (i = 0; i < g_nkernels; ++i) {
    fputs(i ? ",\n    " : "\n    ", stdout);
    fputs("{\"op\": ", stdout);
    json_str(g_kernels[i].op);
    fputs(", \"device\": ", stdout);
    json_str(device_name(g_kernels[i].device));
    fputs(", \"provider\": ", stdout);
    json_str(g_kernels[i].provider);
    printf(", \"priority\": %d}", (int)g_kernels[i].priority);
  }
  fputs(g_nkernels ? "\n  ],\n  \"backward\": " : "],\n  \"backward\": ", stdout);
  json_list(&g_backward);
  fputs(",\n  \"devices\": ", stdout);
  json_list(&devices);
  fputs(",\n  \"requires\": [", stdout);
  {
    int first = 1;
    for (i = 0; i < g_requires.len; ++i) {
      if (contains(&g_ops, g_requires.items[i])) continue; /* looked up before it was defined */
      if (!first) fputs(", ", stdout);
      first = 0;
      json_str(g_requires.items[i]);
    }
  }
  fputs("]", stdout);
  {
    void* sym = dlsym(lib, VT_OPPACK_CAPABILITIES_SYMBOL);
    if (sym) {
      vt_oppack_capabilities_fn caps_fn;
      const char* caps;
      memcpy(&caps_fn, &sym, sizeof caps_fn);
      caps = caps_fn();
      if (!caps || !*caps) {
        fprintf(stderr, "vt_describe: %s exports %s but it returns no text\n", argv[1],
                VT_OPPACK_CAPABILITIES_SYMBOL);
        return 3;
      }
      fputs(",\n  \"capabilities\": ", stdout);
      fputs(caps, stdout);
    }
  }
  fputs("\n}\n", stdout);
  /* no dlclose: a pack may have registered atexit handlers or thread-locals; the process ends now */
  return fflush(stdout) == 0 ? 0 : 4;
}
