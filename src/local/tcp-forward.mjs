// A TCP forwarder: listens on HOST:PORT and relays each connection to TARGET_HOST:PORT.
// The real node's pods reach the apiserver, which listens on loopback only, through it
// (see apiserver-bridge.ts). Plain JavaScript with node's own modules, so that it runs as
// a daemon with nothing but `node`.
//   node tcp-forward.mjs HOST PORT TARGET_HOST
import { connect, createServer } from "node:net";

const [host, portText, target] = process.argv.slice(2);
const port = Number(portText);
if (!host || !target || !Number.isInteger(port) || port <= 0) {
  process.stderr.write("usage: node tcp-forward.mjs HOST PORT TARGET_HOST\n");
  process.exit(2);
}

const server = createServer((client) => {
  const upstream = connect(port, target);
  const close = () => {
    client.destroy();
    upstream.destroy();
  };
  client.pipe(upstream).pipe(client);
  for (const socket of [client, upstream]) {
    socket.on("error", close);
    socket.on("close", close);
  }
});
server.on("error", (error) => {
  process.stderr.write(`tcp-forward ${host}:${port}: ${error.message}\n`);
  process.exit(1);
});
server.listen(port, host, () => process.stderr.write(`forwarding ${host}:${port} to ${target}:${port}\n`));
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => process.exit(0));
