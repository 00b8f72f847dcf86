# A hello app with WEBrick, which Debian ships without gems.
require 'webrick'

message = ENV.fetch('MESSAGE', 'Hello from Ruby on Upscale!')
server = WEBrick::HTTPServer.new(BindAddress: '0.0.0.0', Port: Integer(ENV.fetch('PORT', '8080')),
                                 AccessLog: [[$stdout, WEBrick::AccessLog::COMMON_LOG_FORMAT]])
server.mount_proc('/') do |_req, res|
  res['Content-Type'] = 'text/plain; charset=utf-8'
  res.body = "#{message}\n"
end
$stdout.sync = true
trap('TERM') { server.shutdown }
server.start
