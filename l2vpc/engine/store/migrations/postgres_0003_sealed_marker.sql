-- Version 3: sealed secrets marked out of band. Up to version 2 a sealed secret was a string
-- starting with "sealed:v1:", a prefix a user could type; it is now an object
-- {"$sealed": "v1", "token": <Fernet token>} in place of the string (engine/secrets.py). A
-- value that was typed with the prefix becomes such an object too: it cannot be opened, so its
-- object fails alone (status secret_unreadable) until its secret is set again or it is deleted.
UPDATE objects
SET data = jsonb_set(data, '{pre_shared_key}',
                     jsonb_build_object('$sealed', 'v1', 'token', substr(data->>'pre_shared_key', 11)))
WHERE kind = 'vpn' AND jsonb_typeof(data->'pre_shared_key') = 'string'
  AND left(data->>'pre_shared_key', 10) = 'sealed:v1:';

UPDATE objects
SET data = jsonb_set(data, '{service_key}',
                     jsonb_build_object('$sealed', 'v1', 'token', substr(data->>'service_key', 11)))
WHERE kind = 'direct_connect' AND jsonb_typeof(data->'service_key') = 'string'
  AND left(data->>'service_key', 10) = 'sealed:v1:';

UPDATE objects
SET data = jsonb_set(data, '{bgp,md5_key}',
                     jsonb_build_object('$sealed', 'v1', 'token', substr(data#>>'{bgp,md5_key}', 11)))
WHERE kind = 'direct_connect' AND jsonb_typeof(data#>'{bgp,md5_key}') = 'string'
  AND left(data#>>'{bgp,md5_key}', 10) = 'sealed:v1:';
