"""Who may do what: roles, permissions, accounts, the audit log and login protection."""
