"""PostgreSQL roles and grants for everything breakglass keeps in a database."""
