// An HTTP -> HTTPS redirect worker written against Socketnaut's worker API
// (ES module project): every request is answered 301 to the same host and
// path over HTTPS, on port $HTTPS_PORT (443 by default).  The only
// socketnautd-specific line is the import of "socketnaut-agent".

import * as http from "node:http";
import { createServiceAgent, Level } from "socketnaut-agent";

const httpsPort = Number(process.env.HTTPS_PORT || 443);

const server = http.createServer();

server.on("request", (req, res) => {
  const url = new URL(req.url ?? "/", `http://${req.headers.host ?? "localhost"}`);
  const port = httpsPort === 443 ? "" : `:${httpsPort}`;
  const location = `https://${url.hostname}${port}${url.pathname}${url.search}`;
  res.writeHead(301, { Location: location, "Content-Length": 0 }).end();
  agent.log.debug(`redirect ${url.pathname} to ${location}`);
});

server.listen({ port: 0, host: "127.0.0.1" });

const agent = createServiceAgent({ server });

agent.log.setLevel(Level.DEBUG);
