<?php
// A hello app served by PHP's built-in web server.
header('Content-Type: text/plain; charset=utf-8');
echo getenv('MESSAGE') ?: 'Hello from PHP on Upscale!', "\n";
