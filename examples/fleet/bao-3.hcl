# OpenBao node 3 of 3: Raft storage, joins the others with retry_join.
ui = false
api_addr = "http://bao-3:8200"
cluster_addr = "https://bao-3:8201"

storage "raft" {
  path    = "/openbao/file"
  node_id = "bao-3"
  retry_join {
    leader_api_addr = "http://bao-1:8200"
  }
  retry_join {
    leader_api_addr = "http://bao-2:8200"
  }
  retry_join {
    leader_api_addr = "http://bao-3:8200"
  }
}

# Plain HTTP keeps the trial short; in production give each node a
# certificate and the agents store.ca_cert.
listener "tcp" {
  address         = "0.0.0.0:8200"
  cluster_address = "0.0.0.0:8201"
  tls_disable     = true
}
