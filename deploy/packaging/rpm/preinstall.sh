# natsgate.rpm %pre: the service's system user, before the files that name its
# group are laid down (same user as the .deb's postinst makes).
getent group natsgate >/dev/null || groupadd --system natsgate
getent passwd natsgate >/dev/null || useradd --system --gid natsgate --no-create-home \
    --home-dir /nonexistent --shell /sbin/nologin --comment "natsgate gateway" natsgate
exit 0
