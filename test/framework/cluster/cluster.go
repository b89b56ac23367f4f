// Package cluster starts a real kube-apiserver backed by a real etcd on
// loopback ports, with certificates of its own, for the tests that need an
// API server but no controller manager or scheduler: the migration test
// plays their parts through the API, and the kubelet start-up benchmark
// binds its pods to the node itself.
package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/berth-cri/berth/test/framework"
)

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	Dir    string
	Server string // https://127.0.0.1:<port>
	// Kubeconfig is an administrator's (group system:masters).
	Kubeconfig string
	Client     kubernetes.Interface

	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
}

// Start starts etcd (Debian's etcd-server) and kube-apiserver (built by
// hack/build-kube-apiserver.sh, or BERTH_KUBE_APISERVER); both stop when tb
// ends.
func Start(tb testing.TB) *Cluster {
	tb.Helper()
	apiserver := framework.BuiltTool(tb, "BERTH_KUBE_APISERVER", "build-kube-apiserver.sh")
	etcd, err := exec.LookPath("etcd")
	if err != nil {
		tb.Fatalf("etcd is not installed (apt install etcd-server, or run hack/setup-migrate.sh): %v", err)
	}
	dir := tb.TempDir()
	c := &Cluster{Dir: dir}
	c.ca, c.caKey = newCA(tb)
	writePEM(tb, filepath.Join(dir, "ca.crt"), "CERTIFICATE", c.ca.Raw)
	c.writeKeyPair(tb, "apiserver", c.issue(tb, "kube-apiserver", nil, x509.ExtKeyUsageServerAuth,
		[]net.IP{net.ParseIP("127.0.0.1")}, []string{"localhost"}))
	sa, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	saDER, _ := x509.MarshalECPrivateKey(sa)
	writePEM(tb, filepath.Join(dir, "sa.key"), "EC PRIVATE KEY", saDER)
	saPub, _ := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	writePEM(tb, filepath.Join(dir, "sa.pub"), "PUBLIC KEY", saPub)

	clientPort, peerPort, apiPort := framework.FreePort(tb), framework.FreePort(tb), framework.FreePort(tb)
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	startProcess(tb, dir, "etcd", etcd,
		"--name", "berth-test",
		"--data-dir", filepath.Join(dir, "etcd"),
		"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
		"--initial-cluster", "berth-test="+peerURL,
		"--log-level", "warn")

	apiExited := startProcess(tb, dir, "kube-apiserver", apiserver,
		"--etcd-servers", etcdURL,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", strconv.Itoa(apiPort),
		"--cert-dir", filepath.Join(dir, "apiserver-certs"),
		"--tls-cert-file", filepath.Join(dir, "apiserver.crt"),
		"--tls-private-key-file", filepath.Join(dir, "apiserver.key"),
		"--client-ca-file", filepath.Join(dir, "ca.crt"),
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range", "10.96.0.0/24",
		"--authorization-mode", "RBAC",
		// No controller manager creates the default service accounts.
		"--disable-admission-plugins", "ServiceAccount",
		"--enable-priority-and-fairness=false",
		// The kubernetes Service's endpoints cannot be a loopback address.
		"--endpoint-reconciler-type", "none",
		"--v", "1")

	c.Server = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	c.Kubeconfig = c.UserKubeconfig(tb, "admin", "berth-test-admin", "system:masters")
	waitReadyz(tb, c.Server, dir, apiExited)
	rc, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		tb.Fatal(err)
	}
	// Not client-go's 5 requests a second: a test creating a batch of pods
	// at once must not have them queued on its side.
	rc.QPS, rc.Burst = 500, 1000
	if c.Client, err = kubernetes.NewForConfig(rc); err != nil {
		tb.Fatal(err)
	}
	return c
}

// UserKubeconfig issues a client certificate for user (in groups) and
// writes a kubeconfig that uses it, named file.kubeconfig in the cluster's
// directory; it returns the kubeconfig's path.
func (c *Cluster) UserKubeconfig(tb testing.TB, file, user string, groups ...string) string {
	tb.Helper()
	c.writeKeyPair(tb, file, c.issue(tb, user, groups, x509.ExtKeyUsageClientAuth, nil, nil))
	path := filepath.Join(c.Dir, file+".kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: test
  context: {cluster: test, user: %[3]s}
current-context: test
`, c.Server, filepath.Join(c.Dir, "ca.crt"), file, filepath.Join(c.Dir, file+".crt"), filepath.Join(c.Dir, file+".key"))
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

func waitReadyz(tb testing.TB, server, dir string, exited <-chan struct{}) {
	tb.Helper()
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "admin.crt"), filepath.Join(dir, "admin.key"))
	if err != nil {
		tb.Fatal(err)
	}
	caPEM, _ := os.ReadFile(filepath.Join(dir, "ca.crt"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: []tls.Certificate{cert}, RootCAs: pool}}}
	deadline := time.Now().Add(3 * time.Minute)
	var last string
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			tb.Fatal("kube-apiserver exited")
		default:
		}
		resp, err := hc.Get(server + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		time.Sleep(500 * time.Millisecond)
	}
	tb.Fatalf("kube-apiserver never became ready: %s", last)
}

// startProcess starts a server process logging to dir/name.log, stops it
// when tb ends, and shows the log's end if tb failed. The channel is closed
// when the process exits.
func startProcess(tb testing.TB, dir, name, bin string, args ...string) <-chan struct{} {
	tb.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		tb.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); f.Close(); close(exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if tb.Failed() {
			out, _ := os.ReadFile(logPath)
			lines := strings.Split(string(out), "\n")
			if len(lines) > 80 {
				lines = lines[len(lines)-80:]
			}
			tb.Logf("%s log (end of %s):\n%s", name, logPath, strings.Join(lines, "\n"))
		}
	})
	return exited
}

type keyPair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(tb testing.TB) (*x509.Certificate, *ecdsa.PrivateKey) {
	tb.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "berth-test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return ca, key
}

func (c *Cluster) issue(tb testing.TB, cn string, orgs []string, usage x509.ExtKeyUsage, ips []net.IP, dns []string) keyPair {
	tb.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  ips,
		DNSNames:     dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.ca, &key.PublicKey, c.caKey)
	if err != nil {
		tb.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return keyPair{cert: cert, key: key}
}

func (c *Cluster) writeKeyPair(tb testing.TB, name string, kp keyPair) {
	tb.Helper()
	writePEM(tb, filepath.Join(c.Dir, name+".crt"), "CERTIFICATE", kp.cert.Raw)
	der, _ := x509.MarshalECPrivateKey(kp.key)
	writePEM(tb, filepath.Join(c.Dir, name+".key"), "EC PRIVATE KEY", der)
}

func writePEM(tb testing.TB, path, typ string, der []byte) {
	tb.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
}
