'use strict';
// A Node worker for services in mode handoff with handoff_channel = node
// (tests/integration/test_handoff.py): http.Server fed by the agent's
// serveHandoffs(); every answer is JSON with the pid, the peer info the agent
// gives for the connection, and the socket's own remote address.
const http = require('http');
const path = require('path');
const { createServiceAgent } = require(
    path.join(__dirname, '..', '..', 'agents', 'node', 'socketnaut-agent.js'));

const server = http.createServer(async (req, res) => {
    const info = await agent.requestProxySocketAddressInfo(req.socket);
    const body = JSON.stringify({
        pid: process.pid, kind: 'node', info,
        getpeername: [req.socket.remoteAddress, req.socket.remotePort],
    });
    res.setHeader('Content-Type', 'application/json');
    res.end(body);
});
const agent = createServiceAgent({ server, handoff: true });
