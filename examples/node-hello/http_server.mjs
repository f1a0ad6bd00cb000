// Socketnaut's "Hello, World!" worker, as written for Socketnaut
// (https://github.com/faranalytics/socketnaut): each request blocks the
// worker for 100 ms, so one process serves at most ~10 requests a second
// and the proxy scales the pool up under load.  The worker prints the true
// client address of every request, which it asks the proxy for.
//
// socketnaut_http_server.mjs is the module as written for Socketnaut;
// http_server.mjs is the same module with only its import line changed,
// which is all it takes to run it under socketnautd (node-hello.conf).

import * as http from "node:http";
import { createServiceAgent, Level } from "socketnaut-agent";

const server = http.createServer(); // Configure this HTTP Server however you choose.

server.on("request", async (req, res) => {
  for (let now = Date.now(), then = now + 100; now < then; now = Date.now()); // Block for 100 milliseconds.
  const proxySocketAddressInfo = await agent.requestProxySocketAddressInfo(req.socket);
  const client = proxySocketAddressInfo?.remote;
  console.log(`${req.method} ${req.url} from ${client?.address}:${client?.port} (pid ${process.pid})`);
  agent.log.debug(JSON.stringify(proxySocketAddressInfo));
  res.end("Hello, World!\n");
});

server.listen({ port: 0, host: "127.0.0.1" });
// Specifying port 0 here will cause the Server to listen on a random port.
// The agent tells the proxy which port the kernel chose.

const agent = createServiceAgent({ server });

agent.log.setLevel(Level.DEBUG);
