// node-worker.mjs: the seed's showcase worker for bench/run.py (burst-node).
//
// A plain Node HTTP server, Node's standard library only, blocking like the
// worker in Socketnaut's README: every request busy-waits DELAY ms on the
// main thread (default 100) before it is answered, so one process serves at
// most 1000 / DELAY requests per second and spends that time on a CPU.
//
//   node node-worker.mjs [--delay MS] [--trace FILE] [--socket PATH | --port N]
//
// With neither --socket nor --port it listens on $SOCKETNAUT_SOCKET (the
// Unix socket socketnautd gives a worker).  An existing socket path is
// replaced.  Routes: GET / (13-byte body), POST /echo (the request body,
// sent back once it has all arrived); anything else is 404.  --trace FILE
// appends "PID START END" (ms since the epoch: handler entered, response
// finished) for every request, one write(2) each to a file opened with
// O_APPEND, so that many workers can share it.

import fs from 'node:fs';
import http from 'node:http';
import process from 'node:process';

function usage(msg) {
	process.stderr.write(`node-worker: ${msg}\n` +
	    'usage: node node-worker.mjs [--delay MS] [--trace FILE] ' +
	    '[--socket PATH | --port N]\n');
	process.exit(2);
}

let delay = 100;
let socketPath = null;
let port = null;
let tracePath = null;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
	const a = argv[i];
	const v = argv[i + 1];
	if (v === undefined)
		usage(`${a} needs a value`);
	if (a === '--delay') {
		delay = Number(v);
		if (!Number.isInteger(delay) || delay < 0 || delay > 60000)
			usage('--delay: 0..60000');
	} else if (a === '--trace') {
		tracePath = v;
	} else if (a === '--socket') {
		socketPath = v;
	} else if (a === '--port') {
		port = Number(v);
		if (!Number.isInteger(port) || port < 1 || port > 65535)
			usage('--port: 1..65535');
	} else {
		usage(`unknown argument ${a}`);
	}
	i++;
}
if (socketPath === null && port === null)
	socketPath = process.env.SOCKETNAUT_SOCKET || null;
if (socketPath === null && port === null)
	usage('no --socket, --port or $SOCKETNAUT_SOCKET');

// Block the whole process, as a CPU-bound handler does (Socketnaut's
// README: "Block for 100 milliseconds").
function block(ms) {
	for (let now = Date.now(), then = now + ms; now < then; now = Date.now())
		;
}

const hello = Buffer.from('Hello, World\n');

let traceFd = null;
if (tracePath !== null) {
	try {
		traceFd = fs.openSync(tracePath, 'a');
	} catch (err) {
		usage(`${tracePath}: ${err.message}`);
	}
}

const server = http.createServer((req, res) => {
	const start = Date.now();
	if (traceFd !== null)
		res.on('finish', () => fs.writeSync(traceFd,
		    `${process.pid} ${start} ${Date.now()}\n`));
	block(delay);
	if (req.method === 'GET' && req.url === '/') {
		res.writeHead(200, {
			'Content-Type': 'text/plain',
			'Content-Length': hello.length,
		});
		res.end(hello);
		return;
	}
	if (req.method === 'POST' && req.url === '/echo') {
		const chunks = [];
		req.on('data', (c) => chunks.push(c));
		req.on('end', () => {
			const body = Buffer.concat(chunks);
			res.writeHead(200, {
				'Content-Type': 'application/octet-stream',
				'Content-Length': body.length,
			});
			res.end(body);
		});
		return;
	}
	req.resume();
	res.writeHead(404, { 'Content-Length': 0 });
	res.end();
});

server.on('error', (err) => {
	process.stderr.write(`node-worker: ${err.message}\n`);
	process.exit(1);
});

for (const sig of ['SIGTERM', 'SIGINT'])
	process.on(sig, () => process.exit(0));

if (socketPath !== null) {
	try {
		fs.unlinkSync(socketPath);
	} catch (err) {
		if (err.code !== 'ENOENT')
			usage(`${socketPath}: ${err.message}`);
	}
	server.listen({ path: socketPath, backlog: 1024 });
} else {
	server.listen({ host: '127.0.0.1', port, backlog: 1024 });
}
