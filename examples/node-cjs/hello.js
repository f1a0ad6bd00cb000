// A "Hello, World!" worker written against Socketnaut's worker API, in a
// CommonJS project: the only socketnautd-specific line is the require of
// "socketnaut-agent".  Each answer names the client as the master saw it.

const http = require("node:http");
const { createServiceAgent, Level } = require("socketnaut-agent");

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
