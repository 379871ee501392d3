-- Sets up the sandbox scripts run in; called once per VM with the real globals in place.
-- Receives `where` (a Rust function giving the source and line of an error) and the names of
-- the library tables to make read-only. Returns the environment scripts run with and two
-- runners that call a script function and turn any error into an error table.
local where, libraries = ...
local type, tostring, error, xpcall = type, tostring, error, xpcall
local setmt, rawset_, loadstring_, setfenv_ = setmetatable, rawset, loadstring, setfenv
local G = _G

local readonly = setmt({}, { __mode = 'k' })
local function deny()
  error('Attempt to modify a readonly table', 2)
end

-- A read-only view of `t`: reads go through, writes and metatable changes fail.
local function protect(t)
  local view = {}
  local meta = { __index = t, __newindex = deny }
  local shown = setmt({}, { __index = meta, __newindex = deny })
  readonly[shown] = true
  meta.__metatable = shown
  setmt(view, meta)
  readonly[view] = true
  return view
end

for _, name in ipairs(libraries) do
  if type(G[name]) == 'table' then
    rawset_(G, name, protect(G[name]))
  end
end

local env = protect(G)

setmetatable = function(t, mt)
  if readonly[t] then deny() end
  return setmt(t, mt)
end
rawset = function(t, k, v)
  if readonly[t] then deny() end
  return rawset_(t, k, v)
end
-- Compiled code runs in the sandbox too, and bytecode is refused (it can break the VM).
loadstring = function(s, name)
  if type(s) == 'string' and s:byte(1) == 27 then
    return nil, 'binary code loading is not allowed'
  end
  local f, e = loadstring_(s, name)
  if f then setfenv_(f, env) end
  return f, e
end
dofile, loadfile, print, load, module, require = nil, nil, nil, nil, nil, nil

rawset_(G, '_G', env)
setmt(G, {
  __index = function(_, k)
    error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 0)
  end,
  __newindex = deny,
  __metatable = false,
})

local function handler(err)
  if type(err) == 'userdata' then
    -- Raised by Rust (redis.call, the kill hook): the text has its code; the first line is it.
    err = { err = (tostring(err):match('^[^\n]*')) }
  elseif type(err) ~= 'table' then
    err = { err = 'ERR ' .. tostring(err) }
  end
  if err.source == nil then
    local source, line = where()
    err.source, err.line = source, line
  end
  return err
end

-- An EVAL script: KEYS and ARGV are globals.
local function run(f)
  return xpcall(f, handler)
end

-- A function: KEYS and ARGV are its arguments.
local function run_with(f, keys, argv)
  return xpcall(function() return f(keys, argv) end, handler)
end

return env, run, run_with, protect
