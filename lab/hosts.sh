# The lab's hosts, shared by lab/up.sh and lab/down.sh: name, HTTP port and
# HTTPS port published on 127.0.0.1. inventories/lab/hosts.yml names the same.
LAB_NETWORK=django-asgi-lab
LAB_IMAGE=django-asgi-lab:bookworm
LAB_HOSTS=(
  "app1 8081 8441"
  "app2 8082 8442"
  "app3 8083 8443"
)
