// A Koa worker written against Socketnaut's worker API (ES module project):
// the only socketnautd-specific line is the import of "socketnaut-agent".
// Koa is not packaged by Debian: `npm install koa` in this project first.
// GET / names the client as the master saw it.

import Koa from "koa";
import { createServiceAgent, Level } from "socketnaut-agent";

const app = new Koa();

// Koa composes its middleware when it starts listening: add it first.
app.use(async (ctx) => {
  const info = await agent.requestProxySocketAddressInfo(ctx.req.socket);
  const client = info ? `${info.remote.address}:${info.remote.port}` : "unknown";
  agent.log.info(`koa: ${ctx.method} ${ctx.path} from ${client}`);
  ctx.type = "text/plain";
  ctx.body = `Hello from Koa! You are ${client}.\n`;
});

const server = app.listen({ port: 0, host: "127.0.0.1" });

const agent = createServiceAgent({ server });

agent.log.setLevel(Level.DEBUG);
