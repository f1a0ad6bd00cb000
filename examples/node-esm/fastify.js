// A Fastify worker written against Socketnaut's worker API (ES module
// project): the only socketnautd-specific line is the import of
// "socketnaut-agent".  Fastify is not packaged by Debian: `npm install
// fastify` in this project first.  GET / names the client as the master saw
// it.

import Fastify from "fastify";
import { createServiceAgent, Level } from "socketnaut-agent";

const fastify = Fastify();

const agent = createServiceAgent({ server: fastify.server });

agent.log.setLevel(Level.DEBUG);

fastify.get("/", async (request, reply) => {
  const info = await agent.requestProxySocketAddressInfo(request.raw.socket);
  const client = info ? `${info.remote.address}:${info.remote.port}` : "unknown";
  agent.log.info(`fastify: GET / from ${client}`);
  void reply.type("text/plain").send(`Hello from Fastify! You are ${client}.\n`);
});

void fastify.listen({ port: 0, host: "127.0.0.1" });
