# A VPN is imported by its id. The pre-shared key is not read back: set pre_shared_key
# or pre_shared_key_wo in the configuration before the next apply.
terraform import l2vpc_vpn.example vpn-0123456789ab
