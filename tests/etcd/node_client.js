// Node's `etcd3` package (npm) against mcp-config's etcd API: a watch and a
// lease round trip. Run by tests/etcd/test_node_client.py with NODE_PATH set to
// the packages `make etcd-node` installs; prints one JSON line of results.
"use strict";
const { Etcd3 } = require("etcd3");

async function main() {
  const client = new Etcd3({ hosts: "http://" + process.argv[2] });
  const out = {};
  try {
    await client.put("/js/a").value("1");
    out.get = await client.get("/js/a").string();
    const watcher = await client.watch().prefix("/js/w/").create();
    const seen = new Promise((resolve) => {
      const events = [];
      watcher.on("put", (kv) => events.push(["put", kv.key.toString(), kv.value.toString()]));
      watcher.on("delete", (kv) => {
        events.push(["delete", kv.key.toString()]);
        resolve(events);
      });
    });
    await client.put("/js/w/x").value("v");
    await client.delete().key("/js/w/x");
    out.watch = await seen;
    await watcher.cancel();
    const lease = client.lease(60, { autoKeepAlive: false });
    const id = await lease.grant();
    await lease.put("/js/leased").value("v");
    const keep = await lease.keepaliveOnce();
    out.keepalive = Number(keep.TTL);
    const ttl = await client.get("/js/leased").exec();
    out.leased = ttl.kvs[0].lease === id;
    await lease.revoke();
    out.afterRevoke = await client.get("/js/leased").string();
  } finally {
    client.close();
  }
  console.log(JSON.stringify(out));
}

main().catch((err) => {
  console.error(err && err.stack ? err.stack : String(err));
  process.exit(1);
});
