// The text and JSON forms of `nvmux-manage status` for a live group. The
// JSON keys are stable (scripts and tests read them); new keys are added
// after the existing ones of an object, never in between.
#include <cstdio>
#include <string>

#include "shm/base/format.h"
#include "tools/manage/manage_output.h"
#include "tools/manage/manage_status.h"

namespace nvmux::manage {
namespace {

std::string OwnerText(const StatusOwner& o) {
  if (o.pid == 0) return "slot " + std::to_string(o.slot) + " " + o.name;
  return "slot " + std::to_string(o.slot) + ", pid " + std::to_string(o.pid) + " " + o.name;
}

void OwnerJson(JsonWriter& j, const StatusOwner& o) {
  j.Field("slot", o.slot).Field("pid", o.pid).Field("name", o.name);
}

std::string ControllerText(const StatusController& c) {
  std::string out = Sprintf("\ncontroller %u: %s (transport %s)%s\n", c.index, c.trid.c_str(), c.transport.c_str(),
                            c.locked ? "" : " [read without its lock: a live process held it; values may be torn]");
  out += Sprintf("  model %s, serial %s, firmware %s, cntlid %u, CSTS %s%s%s\n", c.model.c_str(), c.serial.c_str(),
                 c.firmware.c_str(), c.cntlid, Hex(c.csts).c_str(), c.failed ? ", FAILED" : "",
                 c.removed ? ", REMOVED" : "");
  if (c.namespaces.empty()) {
    out += "  namespaces: none\n";
  } else {
    out += Sprintf("  %-6s %-16s %-16s %-16s %-10s %s\n", "nsid", "size (blocks)", "capacity", "used", "block size",
                   "metadata");
    for (const StatusNamespace& n : c.namespaces)
      out += Sprintf("  %-6u %-16llu %-16llu %-16llu %-10u %u\n", n.nsid,
                     static_cast<unsigned long long>(n.size_blocks), static_cast<unsigned long long>(n.capacity_blocks),
                     static_cast<unsigned long long>(n.used_blocks), n.block_size, n.metadata_size);
  }
  if (c.io_queues.empty()) {
    out += "  I/O queues: none in use\n";
  } else {
    out += "  I/O queues in use:\n";
    for (const StatusQueue& q : c.io_queues)
      out +=
          Sprintf("    qid %-4u %s%s\n", q.qid, OwnerText(q.owner).c_str(), q.on_device ? "" : " (not on the device)");
  }
  out += Sprintf(
      "  admin: submitted %llu, completed %llu, routed %llu, AENs %llu, orphaned %llu, AERs outstanding %u, "
      "in flight %u\n",
      static_cast<unsigned long long>(c.admin_submitted), static_cast<unsigned long long>(c.admin_completed),
      static_cast<unsigned long long>(c.admin_routed), static_cast<unsigned long long>(c.aens),
      static_cast<unsigned long long>(c.orphaned), c.aers_outstanding, c.admin_in_flight);
  out += "  mailboxes:";
  if (c.mailboxes.empty()) out += " none";
  for (const StatusMailbox& m : c.mailboxes)
    out += Sprintf("%s %s: %u waiting, %u dropped", &m == &c.mailboxes.front() ? "" : ";", OwnerText(m.owner).c_str(),
                   m.fill, m.dropped);
  return out + "\n";
}

void ControllerJson(JsonWriter& j, const StatusController& c) {
  j.BeginObject()
      .Field("index", c.index)
      .Field("trid", c.trid)
      .Field("transport", c.transport)
      .Field("model", c.model)
      .Field("serial", c.serial)
      .Field("firmware", c.firmware)
      .Field("cntlid", c.cntlid)
      .Field("failed", c.failed)
      .Field("removed", c.removed)
      .Field("csts", c.csts)
      .Field("consistent", c.locked);
  j.Key("namespaces").BeginArray();
  for (const StatusNamespace& n : c.namespaces)
    j.BeginObject()
        .Field("nsid", n.nsid)
        .Field("size_blocks", n.size_blocks)
        .Field("capacity_blocks", n.capacity_blocks)
        .Field("used_blocks", n.used_blocks)
        .Field("block_size", n.block_size)
        .Field("metadata_size", n.metadata_size)
        .EndObject();
  j.EndArray().Key("io_queues").BeginArray();
  for (const StatusQueue& q : c.io_queues) {
    j.BeginObject().Field("qid", q.qid);
    OwnerJson(j, q.owner);
    j.Field("on_device", q.on_device).EndObject();
  }
  j.EndArray()
      .Key("admin")
      .BeginObject()
      .Field("admin_submitted", c.admin_submitted)
      .Field("admin_completed", c.admin_completed)
      .Field("admin_routed", c.admin_routed)
      .Field("aens", c.aens)
      .Field("orphaned", c.orphaned)
      .Field("aers_outstanding", c.aers_outstanding)
      .Field("in_flight", c.admin_in_flight)
      .EndObject();
  j.Key("mailboxes").BeginArray();
  for (const StatusMailbox& m : c.mailboxes) {
    j.BeginObject();
    OwnerJson(j, m.owner);
    j.Field("fill", m.fill).Field("dropped", m.dropped).EndObject();
  }
  j.EndArray().EndObject();
}

}  // namespace

std::string StatusText(const StatusReport& r) {
  std::string out = Sprintf("group %d: live, primary pid %d, DMA memory: %u allocation(s), %llu bytes\n", r.group,
                            r.primary_pid, r.dma_allocations, static_cast<unsigned long long>(r.dma_bytes));
  out += Sprintf(
      "limits: %u process slot(s), %u controller(s), DMA pool %llu MiB (nvmuxd --max-processes, --max-controllers, "
      "--dma-pool-mb)\n",
      r.max_processes, r.max_controllers, static_cast<unsigned long long>(r.dma_pool_bytes >> 20));
  out += Sprintf("%-5s %-8s %-11s %-20s %-12s %-7s %s\n", "slot", "pid", "role", "name", "cores", "qpairs", "admin");
  for (const StatusProcess& p : r.processes)
    out += Sprintf("%-5u %-8d %-11s %-20s %-12s %-7u %u\n", p.slot, p.pid, p.role.c_str(), p.name.c_str(),
                   p.cores.c_str(), p.qpairs, p.admin_outstanding);
  for (const StatusReaped& x : r.reaped)
    out += Sprintf(
        "reaped: pid %d (%s, slot %u) at %s, released %llu item(s) (its DMA memory, I/O queues and "
        "admin mailbox)\n",
        x.pid, x.name.c_str(), x.slot, FormatRealtime(x.when_ns).c_str(), static_cast<unsigned long long>(x.released));
  if (r.controllers.empty()) out += "controllers: none published (start nvmuxd with -r TRID)\n";
  for (const StatusController& c : r.controllers) out += ControllerText(c);
  return out;
}

std::string StatusJson(const StatusReport& r) {
  JsonWriter j;
  j.BeginObject()
      .Field("group", r.group)
      .Field("state", "live")
      .Field("primary_pid", r.primary_pid)
      .Key("dma")
      .BeginObject()
      .Field("allocations", r.dma_allocations)
      .Field("bytes", r.dma_bytes)
      .EndObject()
      .Key("limits")
      .BeginObject()
      .Field("max_processes", r.max_processes)
      .Field("max_controllers", r.max_controllers)
      .Field("dma_pool_bytes", r.dma_pool_bytes)
      .EndObject();
  j.Key("processes").BeginArray();
  for (const StatusProcess& p : r.processes)
    j.BeginObject()
        .Field("slot", p.slot)
        .Field("pid", p.pid)
        .Field("role", p.role)
        .Field("name", p.name)
        .Field("cores", p.cores)
        .Field("qpairs", p.qpairs)
        .Field("admin_outstanding", p.admin_outstanding)
        .EndObject();
  j.EndArray().Key("reaped").BeginArray();
  for (const StatusReaped& x : r.reaped)
    j.BeginObject()
        .Field("pid", x.pid)
        .Field("name", x.name)
        .Field("released", x.released)
        .Field("when_ns", x.when_ns)
        .Field("slot", x.slot)
        .Field("when", FormatRealtime(x.when_ns))
        .EndObject();
  j.EndArray().Key("controllers").BeginArray();
  for (const StatusController& c : r.controllers) ControllerJson(j, c);
  j.EndArray().EndObject();
  return j.Line();
}

}  // namespace nvmux::manage
