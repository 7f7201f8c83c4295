-- Version 3: sealed secrets marked out of band. Up to version 2 a sealed secret was a string
-- starting with "sealed:v1:", a prefix a user could type; it is now an object
-- {"$sealed": "v1", "token": <Fernet token>} in place of the string (engine/secrets.py). A
-- value that was typed with the prefix becomes such an object too: it cannot be opened, so its
-- object fails alone (status secret_unreadable) until its secret is set again or it is deleted.
UPDATE objects
SET data = json_set(data, '$.pre_shared_key',
                    json_object('$sealed', 'v1', 'token', substr(json_extract(data, '$.pre_shared_key'), 11)))
WHERE kind = 'vpn' AND json_type(data, '$.pre_shared_key') = 'text'
  AND substr(json_extract(data, '$.pre_shared_key'), 1, 10) = 'sealed:v1:';

UPDATE objects
SET data = json_set(data, '$.service_key',
                    json_object('$sealed', 'v1', 'token', substr(json_extract(data, '$.service_key'), 11)))
WHERE kind = 'direct_connect' AND json_type(data, '$.service_key') = 'text'
  AND substr(json_extract(data, '$.service_key'), 1, 10) = 'sealed:v1:';

UPDATE objects
SET data = json_set(data, '$.bgp.md5_key',
                    json_object('$sealed', 'v1', 'token', substr(json_extract(data, '$.bgp.md5_key'), 11)))
WHERE kind = 'direct_connect' AND json_type(data, '$.bgp.md5_key') = 'text'
  AND substr(json_extract(data, '$.bgp.md5_key'), 1, 10) = 'sealed:v1:';
