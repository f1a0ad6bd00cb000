// An Express worker written against Socketnaut's worker API, in an ES
// module project ("type": "module"): the only socketnautd-specific line is
// the import of "socketnaut-agent".  GET / names the client as the master
// saw it.

import * as http from "node:http";
import express from "express";
import { createServiceAgent, Level } from "socketnaut-agent";

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
