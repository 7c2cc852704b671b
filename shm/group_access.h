// Who may use a group's files: the checks a process makes before it touches
// a group, and the sharing a primary started with an access group applies.
//
// A group's files (runtime directory, lock file, DPDK's config, fbarrays and
// mp sockets, hugepage files) belong to the user who started its primary,
// mode 0600 (DPDK creates them so). `nvmuxd --access-group NAME` makes them
// usable by that Unix group: the runtime directory becomes setgid 2770 with
// that group (so files created in it later get the group too), every file
// gets the group and its owner's read/write bits for the group. DPDK creates
// some files later (mp sockets of joining processes, hugepage files when the
// heap grows): ShareGroupFiles is idempotent and nvmuxd repeats it.
//
// Thread safety: free functions over the filesystem.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "shm/base/result.h"
#include "shm/group_paths.h"

namespace nvmux::shm {

// Errors: ENOENT naming the group name when it does not exist.
Result<gid_t> LookupUnixGroup(const std::string& name);

// "uid 0 (root)": a uid for messages.
std::string DescribeUid(uid_t uid);

// Why this process cannot reach or use `path`, for messages: the first
// directory on the way it may not enter, else the path's owner and mode.
std::string DescribeAccess(const std::string& path);

// May this process use the group (read and write its lock file, runtime
// files and hugepage files)? Checked before the process joins or touches
// anything. A group that does not exist yet passes (its creator makes it).
// Errors: EACCES naming the group, the path refused, its owner and mode, and
// what to do ("ask its owner or start nvmuxd with --access-group").
Status CheckGroupAccess(const GroupPaths& paths);

// Can this process remove every file of the group (write and search access
// to each file's directory, and the sticky bit's ownership rule)?
// Errors: EACCES naming the first file it cannot remove and its owner.
Status CheckCanRemove(const GroupPaths& paths);

// Gives the access group the group's directory and files (see above). The
// caller must be root or a member of gid. Errors: EPERM/others naming the path.
Status ShareGroupDirectory(const GroupPaths& paths, gid_t gid);

// The read-only role (nvmuxd --status-readable): everyone may search the
// group's runtime directory and read its lock file, so any user's
// `nvmux-manage status` proves the group live or dead (and names its
// primary); joining still needs the access above. Errors: chmod's, naming the path.
Status MakeStatusReadable(const GroupPaths& paths);
// Process-wide switch a primary reads when it opens its group (set by
// nvmuxd before Env::Init; the API's EnvOptions stay unchanged).
void SetStatusReadable(bool on);
bool StatusReadable();
Status ShareGroupFiles(const GroupPaths& paths, gid_t gid);

}  // namespace nvmux::shm
