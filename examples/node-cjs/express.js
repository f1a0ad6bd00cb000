// An Express worker written against Socketnaut's worker API, in a
// CommonJS project: the only socketnautd-specific line is the require of
// "socketnaut-agent".  GET / names the client as the master saw it.

const http = require("node:http");
const express = require("express");
const { createServiceAgent, Level } = require("socketnaut-agent");

const app = express();

app.get("/", async (req, res) => {
  const info = await agent.requestProxySocketAddressInfo(req.socket);
  const client = info ? `${info.remote.address}:${info.remote.port}` : "unknown";
  agent.log.info(`express: GET / from ${client}`);
  res.type("text/plain").send(`Hello from Express! You are ${client}.\n`);
});

const server = http.createServer(app);

server.listen({ port: 0, host: "127.0.0.1" });

const agent = createServiceAgent({ server });

agent.log.setLevel(Level.DEBUG);
