/*
 * CFuseKernel: the FUSE kernel protocol as the kernel itself declares it
 * (<linux/fuse.h>), for the fake kernel in FUSETesting. A module apart from
 * CFuse because <linux/fuse.h> and libfuse's headers define the same FUSE_*
 * macros; and it is the point that the fake kernel encodes requests and
 * decodes replies with the kernel's structs, not with CFuse's copies.
 */
#ifndef MCASTFS_CFUSE_KERNEL_H
#define MCASTFS_CFUSE_KERNEL_H

#include <linux/fuse.h>

#endif
