// A hello app with Express. It listens on PORT on every address: the
// router reaches it from outside the container.
const express = require("express");

const message = process.env.MESSAGE || "Hello from Node.js on Upscale!";
const app = express();

app.get("/", (req, res) => {
  res.type("text/plain").send(message + "\n");
});

const port = Number(process.env.PORT || 8080);
const server = app.listen(port, "0.0.0.0", () => {
  console.log(`listening on port ${port}`);
});

// The container is stopped with SIGTERM: finish what is in flight, then go.
process.on("SIGTERM", () => server.close(() => process.exit(0)));
