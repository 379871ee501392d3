-- The Lua side of the `redis` table: wrappers that raise the error tables the Rust helpers
-- return, so an error carries Redis's shape ({err = ...}) to the script's error handler.
-- (`redis.call` and `redis.pcall` are Rust functions each run binds to its command's view.)
local redis, error = ...

local function raising(f)
  return function(...)
    local r, failed = f(...)
    if failed then error(r, 0) end
    return r
  end
end

for _, name in ipairs({ 'sha1hex', 'setresp', 'set_repl', 'error_reply', 'status_reply', 'log',
                        'acl_check_cmd' }) do
  redis[name] = raising(redis[name])
end
