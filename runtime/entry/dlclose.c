/* dlclose: a module unloaded leaves its addresses to whatever is mapped there next,
 * perhaps another module. From here an address may name other code: the profile checks
 * its module snapshot again (os/modules.c: a new era if the loader unloaded something),
 * and placement makes a new view of the rules' addresses, every thread's site and walk
 * caches stale (types.h) if anything was unloaded.
 * dlopen is not wrapped: glibc picks the namespace and search path of a dlopen from its
 * caller's address, which a wrapper would change; a module loaded with nothing unloaded
 * before it takes no address that named other code. */
#define _GNU_SOURCE
#include "internal.h"

MP_EXPORT int dlclose(void *handle)
{
    static void *cache;
    int (*next)(void *) = (int (*)(void *))mp_next_symbol(&cache, "dlclose");
    if (!next)
        return -1; /* no dlclose below us: nothing can have been opened */
    int r = next(handle);
    if (r == 0) {
        mp_modules_unloaded();
        if (mp_mode == MP_PLACING)
            mp_sites_modules_changed();
    }
    return r;
}
