-- The environment function libraries run in. One table holds their globals; what it reads
-- through is switched: while FUNCTION LOAD runs the library's code, only the library API
-- (`redis.register_function`, `redis.log` and the constants); when a function runs, the
-- sandbox every script sees.
local env, protect, register, log, constants = ...
local error, tostring, pairs, setmt = error, tostring, pairs, setmetatable

local function missing(_, k)
  error("Script attempted to access nonexistent global variable '" .. tostring(k) .. "'", 0)
end
local function deny()
  error('Attempt to modify a readonly table', 2)
end
local function raising(f)
  return function(...)
    local r, failed = f(...)
    if failed then error(r, 0) end
    return r
  end
end

local api = { register_function = raising(register), log = log }
for k, v in pairs(constants) do api[k] = v end
setmt(api, { __index = missing })
local load_globals = setmt({ redis = protect(api) }, { __index = missing, __newindex = deny })

local meta = { __index = env, __newindex = deny, __metatable = false }
local lib_env = setmt({}, meta)

local function loading(on)
  if on then meta.__index = load_globals else meta.__index = env end
end

return lib_env, loading
