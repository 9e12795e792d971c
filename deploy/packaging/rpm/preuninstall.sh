# natsgate.rpm %preun ($1: 0 on erase, 1 on upgrade): on erase stop and
# disable the unit (its SIGTERM drains the clients), as %systemd_preun does.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now natsgate.service >/dev/null 2>&1 || :
fi
exit 0
