# An attachment is imported by its id.
terraform import l2vpc_attachment.example att-0123456789ab
