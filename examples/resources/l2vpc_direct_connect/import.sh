# A direct connect is imported by its id. Secrets (md5_key, service_key) are read back
# into state; keep them in the configuration so the next plan shows no change.
terraform import l2vpc_direct_connect.example dx-0123456789ab
