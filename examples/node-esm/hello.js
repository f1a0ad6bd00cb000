// A "Hello, World!" worker written against Socketnaut's worker API, in an
// ES module project ("type": "module"): the only socketnautd-specific
// line is the import of "socketnaut-agent" where a Socketnaut worker
// imports "socketnaut".  Each answer names the client as the master saw it.

import * as http from "node:http";
import { createServiceAgent, Level } from "socketnaut-agent";

const server = http.createServer();

server.on("request", async (req, res) => {
  const info = await agent.requestProxySocketAddressInfo(req.socket);
  const client = info ? `${info.remote.address}:${info.remote.port}` : "unknown";
  agent.log.info(`${req.method} ${req.url} from ${client}`);
  res.setHeader("Content-Type", "text/plain");
  res.end(`Hello, World! You are ${client}.\n`);
});

// Port 0: the kernel picks a free port, and the agent reports it to the
// master (backend "agent").
server.listen({ port: 0, host: "127.0.0.1" });

const agent = createServiceAgent({ server });

agent.log.setLevel(Level.DEBUG);
