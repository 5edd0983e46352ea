// CPlugin: the plugin ABI (include/spool_plugin.h) for Swift; nothing to compile but this.
#include "spool_plugin.h"
