/* schema_probe.c — init defines one op whose schema comes from the environment variable
 * VT_TEST_SCHEMA, so one library can try many (bad) schemas; a refused schema fails init. */
#include <stdlib.h>

#include <vt/oppack.h>

static vt_status init(const vt_host* host, vt_pack* pack) {
  const char* schema = getenv("VT_TEST_SCHEMA");
  if (!schema) return host->set_error(VT_ERR_VALUE, "schemaprobe: VT_TEST_SCHEMA is not set");
  return host->define_op(pack, schema);
}

VT_OPPACK_DEFINE(init)
