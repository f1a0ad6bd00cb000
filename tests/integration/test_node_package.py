"""The Node agent as a package (agents/node, "socketnaut-agent"): one module behind its ESM and
CommonJS entries, importable by name from a "type": "module" project and a CommonJS one (the
issue's "does not provide an export named 'Level'" gone), TypeScript declarations that compile
against usage and refuse misuse, and the hello world and Express workers of examples/node-esm
and examples/node-cjs, moved into projects of their own, run by the real daemon: each answer
names the client address and port the worker got from requestProxySocketAddressInfo.

Projects are laid out as `npm install /path/to/agents/node` leaves them: node_modules/
socketnaut-agent a symbolic link to the package.  Express is Debian's node-express
(/usr/share/nodejs/express, found with NODE_PATH by its own dependencies).  Fastify and Koa are
not in Debian: their workers run only when SN_NODE_MODULES names a node_modules directory that
holds them (e.g. after `npm install fastify koa`)."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

import harness

AGENT_DIR = os.path.join(harness.ROOT, "agents", "node")
EXAMPLES = os.path.join(harness.ROOT, "examples")
NODE = shutil.which("node") or ("/usr/bin/node" if os.access("/usr/bin/node", os.X_OK) else None)
TSC = shutil.which("tsc")
DEBIAN_NODE = "/usr/share/nodejs"
EXPRESS = os.path.join(DEBIAN_NODE, "express")
EXTRA_MODULES = os.environ.get("SN_NODE_MODULES")

# Every name the package exports, in both entries.
EXPORTS = ["Level", "MSG", "ServiceAgent", "SyslogLevel", "connectionKey", "createServiceAgent",
           "encodeFrame", "log", "parsePayload", "requestProxySocketAddressInfo"]


def make_project(root, kind, files=(), express=False, extra=()):
    """A Node project in `root`: package.json of examples/node-KIND, the example files named,
    node_modules/socketnaut-agent linked to the package (as `npm install PATH` does), and
    optionally Debian's express and modules from SN_NODE_MODULES linked beside it."""
    os.makedirs(os.path.join(root, "node_modules"), exist_ok=True)
    shutil.copy(os.path.join(EXAMPLES, "node-" + kind, "package.json"), root)
    for name in files:
        shutil.copy(os.path.join(EXAMPLES, "node-" + kind, name), root)
    os.symlink(AGENT_DIR, os.path.join(root, "node_modules", "socketnaut-agent"))
    if express:
        os.symlink(EXPRESS, os.path.join(root, "node_modules", "express"))
    for name in extra:
        os.symlink(os.path.join(EXTRA_MODULES, name), os.path.join(root, "node_modules", name))
    return root


def run_node(args, cwd, env=None, timeout=20):
    e = harness.daemon_env(env)
    e.pop("SOCKETNAUT_CONTROL_FD", None)
    out = subprocess.run([NODE] + args, cwd=cwd, capture_output=True, timeout=timeout, env=e)
    return out.returncode, out.stdout.decode(), out.stderr.decode()


# Loads the package both ways and prints what it finds (an ES module of the test project).
SHAPE = r'''
import * as esm from "socketnaut-agent";
import { createRequire } from "node:module";
const cjs = createRequire(import.meta.url)("socketnaut-agent");
const names = Object.keys(esm).filter((k) => k !== "default").sort();
console.log(JSON.stringify({
  esm: names,
  cjs: Object.keys(cjs).sort(),
  same: names.every((k) => esm[k] === cjs[k]),
  level: [esm.Level.DEBUG, esm.Level.INFO, esm.Level.WARN, esm.Level[7], esm.Level.CRITICAL],
  syslog: esm.SyslogLevel === esm.Level,
}));
'''

# The top-level log and requestProxySocketAddressInfo without an agent: stderr, undefined.
TOPLEVEL = r'''
import { log, Level, requestProxySocketAddressInfo } from "socketnaut-agent";
log.info("shown at info");
log.debug("hidden at info");
log.setLevel(Level.DEBUG);
log.debug("shown at debug");
log("memoir error", 40);
log.setLevel("warning");
log.notice("hidden at warning");
console.log(String(await requestProxySocketAddressInfo({ remotePort: 1234 })));
'''

# A worker using the module-level exports: its log lines go through the channel once an agent
# exists, and requestProxySocketAddressInfo asks that agent.
TOPLEVEL_WORKER = r'''
import * as http from "node:http";
import { createServiceAgent, requestProxySocketAddressInfo, log } from "socketnaut-agent";
const server = http.createServer(async (req, res) => {
  const info = await requestProxySocketAddressInfo(req.socket);
  log.warn(`module-level log for ${info.remote.port}`);
  res.end(JSON.stringify(info));
});
server.listen({ port: 0, host: "127.0.0.1" });
createServiceAgent({ server });
'''

# Type checking without @types/node (not packaged by Debian): the few node declarations the
# package's .d.ts and the usage files touch.
NODE_TYPES_STUB = r'''
declare class Buffer extends Uint8Array {}
declare module "net" {
    export interface AddressInfo { address: string; family: string; port: number; }
    export class Socket { remotePort?: number; remoteAddress?: string; }
    export class Server { listen(options: { port: number; host: string }): this;
                          address(): AddressInfo | string | null; }
}
declare module "events" {
    export class EventEmitter { on(event: string | symbol, listener: (...args: any[]) => void): this;
                                once(event: string | symbol, listener: (...args: any[]) => void): this; }
}
declare module "node:http" {
    import { Server as NetServer, Socket } from "net";
    export class IncomingMessage { socket: Socket; url?: string; }
    export class ServerResponse { end(text: string): void; }
    export class Server extends NetServer {}
    export function createServer(listener?: (req: IncomingMessage, res: ServerResponse) => void): Server;
}
'''

TS_ESM = r'''
import * as http from "node:http";
import { createServiceAgent, ServiceAgent, requestProxySocketAddressInfo, Level, SyslogLevel, log,
         connectionKey, encodeFrame, parsePayload, MSG } from "socketnaut-agent";
import type { ProxySocketAddressInfo, ServiceAgentOptions, Logger } from "socketnaut-agent";

const server = http.createServer(async (req, res) => {
    const info: ProxySocketAddressInfo | undefined = await agent.requestProxySocketAddressInfo(req.socket);
    const again = await requestProxySocketAddressInfo(req);
    const port: number | undefined = info?.remote.port ?? again?.local.port;
    res.end(String(port));
});
server.listen({ port: 0, host: "127.0.0.1" });
const options: ServiceAgentOptions = { server, exitOnDrain: false, queryTimeout: 1000 };
const agent: ServiceAgent = createServiceAgent(options);
agent.on("drain", () => log.notice("draining"));
agent.log.setLevel(Level.DEBUG);
const logger: Logger = log;
logger.setLevel(SyslogLevel.WARN);
const level: Level = Level.INFO;
const name: string = Level[level];
const sent: boolean = log(name, "warning");
const key: string | undefined = connectionKey(54321);
const frame = encodeFrame(MSG.LOG, [["level", 6]], "hi");
const fields: { [key: string]: string } = parsePayload(frame);
void [sent, key, fields];
'''

TS_CJS = r'''
import http = require("node:http");
import agentlib = require("socketnaut-agent");
const server = http.createServer();
const agent = agentlib.createServiceAgent({ server });
agent.log.setLevel(agentlib.Level.DEBUG);
void agentlib.requestProxySocketAddressInfo(54321).then((i) => agentlib.log.info(JSON.stringify(i)));
'''

# Each line is one mistake the declarations must refuse.
TS_BAD = r'''
import { createServiceAgent, Level, log } from "socketnaut-agent";
const agent = createServiceAgent({ server: 42 });
agent.log.setLevel(Level.NOPE);
const port: number = (await agent.requestProxySocketAddressInfo(1)).remote.port;
log.shout("x");
'''


@unittest.skipIf(NODE is None, "node is not installed")
class NodePackageShapeTest(unittest.TestCase):
    """The package without a daemon: its entries, its levels and log, its types."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sn-nodepkg-")
        if not harness.KEEP:
            self.addCleanup(shutil.rmtree, self.tmp, True)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_esm_and_commonjs_entries_export_the_same_objects_by_name(self):
        make_project(self.tmp, "esm")
        self.write("shape.js", SHAPE)
        rc, out, err = run_node(["shape.js"], self.tmp)
        self.assertEqual(rc, 0, err)
        got = json.loads(out)
        self.assertEqual(got["esm"], EXPORTS)
        self.assertEqual(got["cjs"], EXPORTS)
        self.assertTrue(got["same"], "the ES module entry holds copies, not the CommonJS objects")
        self.assertEqual(got["level"], [7, 6, 4, "DEBUG", 2])
        self.assertTrue(got["syslog"])

    def test_package_directory_copied_into_a_module_project_loads_by_path(self):
        # The issue: the bare file copied into a "type": "module" project was read as an ES
        # module ("does not provide an export named 'Level'"); the package's own package.json
        # says it is CommonJS, and the .mjs entry imports it.
        self.write("package.json", '{ "type": "module" }\n')
        shutil.copytree(AGENT_DIR, os.path.join(self.tmp, "vendor", "socketnaut-agent"))
        self.write("by-path.js", 'import { Level, createServiceAgent } from '
                                 '"./vendor/socketnaut-agent/socketnaut-agent.js";\n'
                                 'import { log } from "./vendor/socketnaut-agent/socketnaut-agent.mjs";\n'
                                 'console.log(Level.DEBUG, typeof createServiceAgent, typeof log.setLevel);\n')
        rc, out, err = run_node(["by-path.js"], self.tmp)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.split(), ["7", "function", "function"])

    def test_module_level_log_filters_by_level_and_writes_stderr_without_an_agent(self):
        make_project(self.tmp, "esm")
        self.write("toplevel.js", TOPLEVEL)
        rc, out, err = run_node(["toplevel.js"], self.tmp)
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.split(), ["undefined"])
        lines = [re.sub(r"^<(\w+)> \S+ \d+ - ", r"\1 ", line) for line in err.splitlines()]
        self.assertEqual(lines, ["INFO shown at info", "DEBUG shown at debug",
                                 "ERROR memoir error"], err)

    def write_ts_project(self):
        make_project(self.tmp, "esm")
        self.write("node-stub.d.ts", NODE_TYPES_STUB)

    def tsc(self, *files):
        self.write("tsconfig.json", json.dumps({
            "compilerOptions": {"noEmit": True, "strict": True, "module": "node16",
                                "moduleResolution": "node16", "target": "es2020", "types": []},
            "files": ["node-stub.d.ts"] + list(files)}))
        out = subprocess.run([TSC, "-p", "tsconfig.json"], cwd=self.tmp, capture_output=True,
                             timeout=120)
        return out.returncode, out.stdout.decode() + out.stderr.decode()

    @unittest.skipIf(TSC is None, "tsc is not installed (Debian node-typescript)")
    def test_type_declarations_compile_against_esm_and_commonjs_usage(self):
        self.write_ts_project()
        self.write("usage.mts", TS_ESM)
        self.write("usage.cts", TS_CJS)
        rc, out = self.tsc("usage.mts", "usage.cts")
        self.assertEqual(rc, 0, out)

    @unittest.skipIf(TSC is None, "tsc is not installed (Debian node-typescript)")
    def test_type_declarations_refuse_misuse(self):
        self.write_ts_project()
        self.write("bad.mts", TS_BAD)
        rc, out = self.tsc("bad.mts")
        self.assertNotEqual(rc, 0, out)
        lines = sorted({int(m.group(1)) for m in re.finditer(r"bad\.mts\((\d+),\d+\): error", out)})
        self.assertEqual(lines, [3, 4, 5, 6], out)


@unittest.skipIf(NODE is None, "node is not installed")
class NodePackageDaemonTest(harness.DaemonTest):
    """Workers of examples/node-esm and examples/node-cjs in projects of their own under the
    real daemon."""

    def project(self, kind, files, express=False, extra=()):
        os.chmod(self.tmp, 0o755)
        return make_project(self.path("proj-" + kind), kind, files, express, extra)

    def service(self, name, proj, script, **kw):
        svc = {"name": name, "directory": proj, "command": [NODE, script], "backend": "agent",
               "worker_count": 1, "ready_timeout": "20s",
               "env": ["NODE_PATH=%s" % DEBIAN_NODE]}
        svc.update(kw)
        return svc

    def assert_answers_with_client_address(self, d, name, greeting):
        with harness.Conn(d.ports[name], timeout=20) as c:
            mine = c.sock.getsockname()
            r = c.request("GET", "/")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.text, "%s You are %s:%d.\n" % (greeting, mine[0], mine[1]))
        self.wait_log(d, r"service %s: worker \d+: .*GET / from %s:%d$"
                      % (re.escape(name), re.escape(mine[0]), mine[1]))

    def wait_log(self, d, pattern, timeout=15):
        return harness.wait_until(lambda: re.search(pattern, d.log(), re.M), timeout,
                                  what="log line %r" % pattern)

    def hello_and_express(self, kind):
        express = os.path.isdir(EXPRESS)
        files = ["hello.js", "express.js"] if express else ["hello.js"]
        proj = self.project(kind, files, express=express)
        services = [self.service("hello", proj, "hello.js")]
        if express:
            services.append(self.service("express", proj, "express.js"))
        d = self.start_daemon(services)
        self.assert_answers_with_client_address(d, "hello", "Hello, World!")
        if express:
            self.assert_answers_with_client_address(d, "express", "Hello from Express!")
        self.stop_daemon(d)
        if not express:
            self.skipTest("node-express is not installed: Express worker not run")

    def test_module_project_hello_and_express_workers_get_the_client_address(self):
        self.hello_and_express("esm")

    def test_commonjs_project_hello_and_express_workers_get_the_client_address(self):
        self.hello_and_express("cjs")

    def test_module_level_exports_go_through_the_worker_agent(self):
        proj = self.project("esm", [])
        with open(os.path.join(proj, "top.js"), "w") as f:
            f.write(TOPLEVEL_WORKER)
        d = self.start_daemon([self.service("top", proj, "top.js")])
        with harness.Conn(d.port, timeout=20) as c:
            mine = c.sock.getsockname()
            r = c.request("GET", "/")
        info = json.loads(r.body)
        self.assertEqual((info["remote"]["address"], info["remote"]["port"]), mine[:2])
        self.wait_log(d, r"(^|\s)warning: service top: worker \d+: module-level log for %d$"
                      % mine[1])
        self.stop_daemon(d)

    def test_shipped_example_configurations_run_from_the_tree(self):
        """examples/node-{esm,cjs}/*.conf pass -t and, on free ports, serve from the source
        tree (examples/node_modules links the package); the redirect worker answers 301."""
        services = []
        for kind in ("esm", "cjs"):
            conf = os.path.join(EXAMPLES, "node-" + kind, "node-%s.conf" % kind)
            rc, out, err = harness.run_check(conf)
            self.assertEqual(rc, 0, err)
            with open(conf) as f:
                text = f.read()
            for name, body in re.findall(r'^service "([^"]+)" \{(.*?)^\}', text, re.M | re.S):
                command = re.search(r'^\s*command\s*=\s*"node ([^"]*)"', body, re.M).group(1)
                self.assertRegex(body, r'(?m)^\s*backend\s*=\s*"agent"')
                env = re.search(r'^\s*env\s*=\s*\{([^}]*)\}', body, re.M)
                services.append({"name": name, "directory": harness.ROOT,
                                 "command": [NODE, command], "backend": "agent",
                                 "worker_count": 1, "ready_timeout": "20s",
                                 "env": re.findall(r'"([^"]*)"', env.group(1)) if env else None})
        self.assertEqual(sorted(s["name"] for s in services),
                         ["node-cjs-express", "node-cjs-hello", "node-esm-express",
                          "node-esm-hello", "node-esm-redirect"])
        if not os.path.isdir(EXPRESS):
            services = [s for s in services if not s["name"].endswith("express")]
        d = self.start_daemon(services)
        for svc in services:
            if svc["name"].endswith("redirect"):
                r = harness.http(d.ports[svc["name"]], path="/x?y=1", timeout=20)
                self.assertEqual(r.status, 301, r)
                self.assertEqual(r.headers.get("location"), "https://localhost:8443/x?y=1")
                continue
            greeting = "Hello from Express!" if svc["name"].endswith("express") else \
                "Hello, World!"
            self.assert_answers_with_client_address(d, svc["name"], greeting)
        self.stop_daemon(d)

    @unittest.skipUnless(EXTRA_MODULES and os.path.isdir(os.path.join(EXTRA_MODULES or "", "fastify"))
                         and os.path.isdir(os.path.join(EXTRA_MODULES or "", "koa")),
                         "fastify and koa are not in Debian: set SN_NODE_MODULES to a "
                         "node_modules holding them")
    def test_fastify_and_koa_workers_get_the_client_address(self):
        proj = self.project("esm", ["fastify.js", "koa.js"], extra=("fastify", "koa"))
        env = ["NODE_PATH=%s" % EXTRA_MODULES]
        d = self.start_daemon([self.service("fastify", proj, "fastify.js", env=env),
                               self.service("koa", proj, "koa.js", env=env)])
        self.assert_answers_with_client_address(d, "fastify", "Hello from Fastify!")
        self.assert_answers_with_client_address(d, "koa", "Hello from Koa!")
        self.stop_daemon(d)


if __name__ == "__main__":
    unittest.main()
